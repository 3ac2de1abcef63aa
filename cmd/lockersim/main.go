// Command lockersim is lockerhub's reference locker simulator and MQTT load
// generator; see `lockersim help`. The logic is in package lockersim.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/lockerhub/lockerhub/lockersim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := lockersim.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
