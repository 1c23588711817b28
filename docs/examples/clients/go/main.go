// Command follow-leadership leads while this pod leads, through the leadership sidecar's socket
// (standard library only).
//
// It waits until this unit leads, then works while it leads, passing the term to every piece of
// work (a store that remembers the highest term it has seen refuses a write with a lower one:
// fencing), and stops as soon as the sidecar's watch stream says this unit no longer leads, or the
// stream ends; then it waits again. LEADERSHIP_SOCKET names the socket (the chart's webhook sets
// it).
//
// It prints one line per step: "waiting", "leading term=N", "working term=N", "deposed term=N".
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

// waitMs is how long one wait for leadership lasts before it is asked again (the sidecar's 408).
const waitMs = 30000

// status is the part of GET /v1/status (and of each /v1/watch line) this program reads.
type status struct {
	Leader bool  `json:"leader"`
	Term   int64 `json:"term"`
}

// sidecar is an HTTP client whose every connection goes to the socket.
func sidecar(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dialer net.Dialer
			return dialer.DialContext(ctx, "unix", socket)
		},
	}}
}

// waitUntilLeader returns the term once this unit leads.
func waitUntilLeader(client *http.Client) int64 {
	for {
		reply, err := client.Get(fmt.Sprintf("http://localhost/v1/wait/leader?timeoutMs=%d", waitMs))
		if err != nil {
			// The sidecar is not up yet, or restarting: ask again soon.
			log.Printf("the sidecar did not answer: %v", err)
			time.Sleep(time.Second)
			continue
		}
		var now status
		decodeErr := json.NewDecoder(reply.Body).Decode(&now)
		reply.Body.Close()
		switch {
		case reply.StatusCode == http.StatusOK && decodeErr == nil:
			return now.Term
		case reply.StatusCode == http.StatusRequestTimeout:
		default:
			// 503: the sidecar does not know the lease state yet. Never an answer to act on.
			log.Printf("waiting: %s", reply.Status)
			time.Sleep(time.Second)
		}
	}
}

// watchUntilDeposed cancels the leader's work at the first status that is not this unit leading
// in term, or when the stream ends (a stream that ended says nothing more: stop, to be safe).
func watchUntilDeposed(ctx context.Context, client *http.Client, term int64, deposed context.CancelFunc) {
	defer deposed()
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://localhost/v1/watch", nil)
	if err != nil {
		return
	}
	reply, err := client.Do(request)
	if err != nil {
		return
	}
	defer reply.Body.Close()
	if reply.StatusCode != http.StatusOK {
		return
	}
	lines := bufio.NewScanner(reply.Body)
	for lines.Scan() {
		var now status
		if json.Unmarshal(lines.Bytes(), &now) != nil || !now.Leader || now.Term != term {
			return
		}
	}
}

// work is one piece of the leader's work, fenced with term.
func work(term int64) {
	fmt.Printf("working term=%d\n", term)
}

func main() {
	socket := os.Getenv("LEADERSHIP_SOCKET")
	if socket == "" {
		socket = "/run/leadership/leadership.sock"
	}
	client := sidecar(socket)
	for {
		fmt.Println("waiting")
		term := waitUntilLeader(client)
		fmt.Printf("leading term=%d\n", term)
		leading, deposed := context.WithCancel(context.Background())
		go watchUntilDeposed(leading, client, term, deposed)
		ticker := time.NewTicker(time.Second)
	lead:
		for {
			select {
			case <-leading.Done():
				break lead
			case <-ticker.C:
				work(term)
			}
		}
		ticker.Stop()
		fmt.Printf("deposed term=%d\n", term)
	}
}
