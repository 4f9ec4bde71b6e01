//go:build !unix

package main

import (
	"io"

	"github.com/p2prc/p2prc/tunnel"
)

// onSignalPrintMappings does nothing where there is no SIGUSR1.
func onSignalPrintMappings(*tunnel.Node, io.Writer) (stop func()) { return func() {} }
