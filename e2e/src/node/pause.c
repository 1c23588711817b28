/*
 * The pod sandbox's process for the test node's pause image: it holds the pod's namespaces open,
 * reaps the zombies of processes that end up as its children (it is PID 1 of the pod), and exits
 * when it is asked to stop. Built statically by e2e/images.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
  (void)sig;
  _exit(0);
}

static void reap(int sig) {
  (void)sig;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("leadership pause 1.0");
    return 0;
  }
  if (getpid() != 1) {
    fputs("pause: warning: not PID 1, so orphans are not reaped here\n", stderr);
  }
  struct sigaction stopping = {.sa_handler = stop};
  struct sigaction reaping = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
  if (sigaction(SIGINT, &stopping, NULL) < 0 || sigaction(SIGTERM, &stopping, NULL) < 0 ||
      sigaction(SIGCHLD, &reaping, NULL) < 0) {
    perror("pause: sigaction");
    return 1;
  }
  for (;;) {
    pause();
  }
}
