// Command hubctl is the command-line client of a lockerhub hub: it registers
// lockers, issues and revokes their certificates, makes enrolment tokens and
// calls any API endpoint with the admin credential.
//
// By default it talks to the hub running on this machine, found through the
// hub's data directory (./var/hub.json and ./var/admin.token); --server and
// --token (or HUBCTL_SERVER and HUBCTL_TOKEN) point it elsewhere.
//
// Build with -ldflags "-X main.version=v1.2.3" to stamp the version.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs hubctl with args (without the program name) and returns the exit
// code: 0 on success, 1 when the command failed, 2 for a usage error. Ctrl-C
// cancels the request in flight.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return newCLI(os.Stdin, stdout, stderr).run(ctx, args)
}
