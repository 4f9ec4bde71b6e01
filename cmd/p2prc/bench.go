package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/p2prc/p2prc/cmd/p2prc/internal/bench"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", "bench [--relay HOST:PORT] [--json] [flags]", stderr)
	relay := fs.String("relay", "", "measure through this remote relay, HOST:PORT, instead of one started here (needs its token)")
	asJSON := fs.Bool("json", false, "print the figures as JSON")
	duration := fs.Duration("duration", 3*time.Second, "how long each workload runs on each path")
	rounds := fs.Int("rounds", 1, "measure each workload this many times on each path, taking turns, and report the medians (use on a busy machine)")
	workloads := fs.StringSlice("workloads", nil, "which workloads to run, comma-separated (default: all): "+bench.WorkloadNames())
	modes := fs.StringSlice("modes", nil, "which modes to measure (default: all; with --relay: tls): "+bench.ModeNames())
	concurrency := fs.Int("concurrency", 32, "connections the request workloads keep busy at once")
	openConns := fs.Int("open-conns", 1000, "connections the memory workload holds open")
	gomaxprocs := fs.IntSlice("gomaxprocs", nil, "GOMAXPROCS of the relay and node processes, 0 for Go's default; several (0,1) measure each, side by side")
	profile := fs.String("cpuprofile-dir", "", "write a CPU profile of each relay and node process to this folder")
	forwarders := fs.Bool("forwarders", false, "also measure through two plain TCP forwarders in a row, a yardstick for what two more processes in the path cost on this machine")
	serveServices := fs.Bool("serve-services", false, "run only the bench's TCP services (the bench starts itself so)")
	serveForwarder := fs.StringSlice("serve-forwarder", nil, "run only a forwarder to these HOST:PORTs (the bench starts itself so)")
	fs.MarkHidden("serve-services")
	fs.MarkHidden("serve-forwarder")
	var tok tokenFlags
	tok.add(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *serveServices:
		return bench.ServeServices(ctx, stdout)
	case fs.Changed("serve-forwarder"):
		return bench.ServeForwarder(ctx, *serveForwarder, stdout)
	}
	cfg := bench.Config{
		Duration:    *duration,
		Rounds:      *rounds,
		Workloads:   *workloads,
		Concurrency: *concurrency,
		OpenConns:   *openConns,
		Relay:       *relay,
		GOMAXPROCS:  *gomaxprocs,
		Forwarders:  *forwarders,
		ProfileDir:  *profile,
		Progress:    stderr,
	}
	if *relay != "" {
		token, ok, err := tok.load()
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("--relay %s needs the relay's token: --token-file FILE or %s", *relay, tokenEnv)
		}
		cfg.Token = token
	}
	if len(*modes) > 0 {
		m, err := bench.SelectModes(*modes)
		if err != nil {
			return fmt.Errorf("--modes: %w", err)
		}
		cfg.Modes = m
	}
	if *profile != "" {
		if err := os.MkdirAll(*profile, 0o755); err != nil {
			return fmt.Errorf("--cpuprofile-dir: %w", err)
		}
	}
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if *asJSON {
		return rep.WriteJSON(stdout)
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if *profile != "" {
		role := "relay"
		if *relay != "" {
			role = "node" // a remote relay is not profiled here
		}
		fmt.Fprintf(stderr, "CPU profiles in %s; read one with: go tool pprof -top %s\n", *profile, bench.ProfilePath(*profile, role, rep.Modes[0]))
	}
	return nil
}
