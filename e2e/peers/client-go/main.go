// client-go's leader election (tools/leaderelection with a LeaseLock) behind the command line the
// benchmark drives. One candidate: prints LEADER when this process becomes leader and STOPPED when
// it stops. With --apps A, the load generator: A Leases (NAME0..) of --units U candidates each
// (NAME0-ID0..), all in this process over one clientset without client-side rate limiting (each
// candidate alone stays far below client-go's default 5 requests/s), printing nothing per
// candidate. On SIGTERM the context is cancelled, and ReleaseOnCancel gives the leases up.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

func main() {
	namespace := flag.String("namespace", "default", "namespace of the Lease")
	lease := flag.String("lease", "", "name of the Lease (with --apps: the prefix of their names)")
	identity := flag.String("identity", "", "this candidate's identity (with --apps: the prefix of the unit part)")
	leaseDuration := flag.Duration("lease-duration", 15*time.Second, "LeaseDuration (client-go's documented default: 15s)")
	renewDeadline := flag.Duration("renew-deadline", 10*time.Second, "RenewDeadline (default: 10s)")
	retryPeriod := flag.Duration("retry-period", 2*time.Second, "RetryPeriod (default: 2s)")
	apps := flag.Int("apps", 0, "run the load generator: this many Leases")
	units := flag.Int("units", 3, "with --apps: candidates per Lease")
	flag.Parse()
	if *lease == "" || *identity == "" {
		fmt.Fprintln(os.Stderr, "--lease and --identity are required")
		os.Exit(2)
	}
	config, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeconfig:", err)
		os.Exit(2)
	}
	if *apps > 0 {
		config.QPS = -1
	}
	client := kubernetes.NewForConfigOrDie(config)
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		cancel()
	}()
	run := func(name, id string, announce bool) {
		lock := &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: name, Namespace: *namespace},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: id},
		}
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:            lock,
			ReleaseOnCancel: true,
			LeaseDuration:   *leaseDuration,
			RenewDeadline:   *renewDeadline,
			RetryPeriod:     *retryPeriod,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					if announce {
						fmt.Println("LEADER")
					}
					<-ctx.Done()
				},
				OnStoppedLeading: func() {
					if announce {
						fmt.Println("STOPPED")
					}
				},
			},
		})
	}
	if *apps == 0 {
		run(*lease, *identity, true)
		return
	}
	var candidates sync.WaitGroup
	for app := 0; app < *apps; app++ {
		for unit := 0; unit < *units; unit++ {
			name := fmt.Sprintf("%s%d", *lease, app)
			id := fmt.Sprintf("%s-%s%d", name, *identity, unit)
			candidates.Add(1)
			go func() {
				defer candidates.Done()
				// RunOrDie returns when it loses the lease too; a candidate stands again until
				// the process is told to stop, as a restarted pod would.
				for ctx.Err() == nil {
					run(name, id, false)
				}
			}()
		}
	}
	fmt.Printf("STARTED %d candidates\n", *apps**units)
	candidates.Wait()
}
