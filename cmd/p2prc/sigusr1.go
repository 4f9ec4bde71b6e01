//go:build unix

package main

import (
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/p2prc/p2prc/tunnel"
)

// onSignalPrintMappings prints the node's mappings to w, in the lines it
// printed when it came up, each time the process gets SIGUSR1 (e.g.
// `systemctl kill -s USR1 p2prc-node`). The returned stop ends that and
// waits.
func onSignalPrintMappings(node *tunnel.Node, w io.Writer) (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-sig:
				printMappings(w, node.Status())
			case <-quit:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sig)
		close(quit)
		<-done
	}
}
