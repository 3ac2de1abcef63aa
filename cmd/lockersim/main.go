// Command lockersim is lockerhub's reference locker simulator and MQTT load
// generator; see `lockersim help`. The logic is in package lockersim.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lockerhub/lockerhub/lockersim"
)

var version = "dev" // set by make build: -X main.version=…

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println("lockersim", version)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := lockersim.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
