package main

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"github.com/p2prc/p2prc/cmd/p2prc/internal/bench"
)

// startProfile writes a CPU profile of the whole process to the file named
// by $P2PRC_CPUPROFILE, if set; the returned stop finishes it. It is how
// `p2prc bench --cpuprofile-dir` profiles the relay and node it starts, and
// works for any command: P2PRC_CPUPROFILE=relay.pprof p2prc relay ...
// A profile that cannot start is reported and the command runs anyway.
func startProfile(stderr io.Writer) (stop func()) {
	path := os.Getenv(bench.ProfileEnv)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(stderr, "p2prc: not profiling: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		fmt.Fprintf(stderr, "p2prc: not profiling: %v\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
