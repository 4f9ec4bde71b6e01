package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/p2prc/p2prc/cmd/p2prc/internal/listing"
	"github.com/p2prc/p2prc/registry"
	"github.com/p2prc/p2prc/tunnel"
)

// runRelays lists the relay registry, or adds or probes relays.
func runRelays(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("relays", "relays [--state DIR] [--json] | relays add HOST:PORT | relays probe", stderr)
	state := stateFlag(fs)
	asJSON := fs.Bool("json", false, "print reverse_proxy_server.json's JSON instead of a table")
	fs.SetInterspersed(false) // flags may come before add or probe: relays --state DIR add HOST:PORT
	if err := fs.Parse(args); err != nil {
		return err
	}
	if sub := fs.Arg(0); sub == "add" || sub == "probe" {
		rest := fs.Args()[1:]
		if *state != "" {
			rest = append([]string{"--state", *state}, rest...)
		}
		if sub == "add" {
			return runRelaysAdd(ctx, rest, stdout, stderr)
		}
		return runRelaysProbe(ctx, rest, stdout, stderr)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; see p2prc relays --help", fs.Arg(0))
	}
	relays, err := openRelaysIn(*state)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, registry.ServerFile{Servers: relays.List()})
	}
	listing.Relays(stdout, relays.List(), time.Now())
	return nil
}

func openRelaysIn(state string) (*registry.Servers, error) {
	dir, err := stateDir(state)
	if err != nil {
		return nil, err
	}
	return openRelays(dir)
}

// prober is a node that only measures relays, recording in relays (where
// TLS pins are kept too).
func prober(relays *registry.Servers, ask *askFlags) (*tunnel.Node, error) {
	token, _, err := ask.tok.load()
	if err != nil {
		return nil, err
	}
	return ask.queryNode(relays, token, nil, true)
}

func runRelaysAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("relays add", "relays add HOST:PORT [flags]", stderr)
	state := stateFlag(fs)
	var ask askFlags
	ask.add(fs, 5*time.Second, "how long the relay has to answer the first measurement")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("relays add takes one relay address, HOST:PORT; see p2prc relays add --help")
	}
	addr := fs.Arg(0)
	relays, err := openRelaysIn(*state)
	if err != nil {
		return err
	}
	if err := relays.Vouch(addr); err != nil { // added by hand: this machine vouches for it
		return fmt.Errorf("relays add %s: %w", addr, err)
	}
	p, err := prober(relays, &ask)
	if err != nil {
		return err
	}
	res := p.Probe(ctx, addr)
	if res.Err != nil {
		fmt.Fprintf(stdout, "added %s; it did not answer now (%v): measure it later with 'p2prc relays probe'\n", addr, res.Err)
		return nil
	}
	fmt.Fprintf(stdout, "added %s (%s), latency %.1f ms\n", addr, res.Name, float64(res.Latency)/float64(time.Millisecond))
	return nil
}

func runRelaysProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("relays probe", "relays probe [flags]", stderr)
	state := stateFlag(fs)
	var ask askFlags
	ask.add(fs, 5*time.Second, "how long each relay has to answer")
	if err := parse(fs, args); err != nil {
		return err
	}
	relays, err := openRelaysIn(*state)
	if err != nil {
		return err
	}
	if len(relays.List()) == 0 {
		return errors.New("no relays known; add one with: p2prc relays add HOST:PORT")
	}
	p, err := prober(relays, &ask)
	if err != nil {
		return err
	}
	results, err := p.ProbeAll(ctx)
	if err != nil {
		return err
	}
	listing.Probes(stdout, results)
	for _, r := range results {
		if r.Err == nil {
			return nil
		}
	}
	return fmt.Errorf("none of the %d known relays answered", len(results))
}
