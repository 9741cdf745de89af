/*
 * The pod sandbox's first process for the local real node (scripts/image.sh pause): it only
 * holds the pod's namespaces open, reaps children re-parented to it, and exits on SIGINT or
 * SIGTERM so a sandbox stops at once. Built static, so the image is this one file.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void reap(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
}

int main(void)
{
	struct sigaction sa = {0};

	if (getpid() != 1)
		fputs("pause: not PID 1: orphans will not be reaped here\n", stderr);
	sa.sa_handler = stop;
	if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
		return 1;
	sa.sa_handler = reap;
	sa.sa_flags = SA_NOCLDSTOP;
	if (sigaction(SIGCHLD, &sa, NULL))
		return 1;
	for (;;)
		pause();
}
