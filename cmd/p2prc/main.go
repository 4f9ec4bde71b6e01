// Command p2prc is P2PRC's relay: it lets machines behind NAT serve the
// internet through a relay with a public address. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfile := startProfile(os.Stderr)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	stopProfile()
	if err != nil && !errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "p2prc:", err)
		os.Exit(1)
	}
}

// run dispatches one command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given; see the list above")
	}
	if seed, ok := translateSeed(args); ok {
		args = seed
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "relay":
		return runRelay(ctx, rest, stdout, stderr)
	case "node":
		return runNode(ctx, rest, stdout, stderr)
	case "mappings":
		return runMappings(ctx, rest, stdout, stderr)
	case "relays":
		return runRelays(ctx, rest, stdout, stderr)
	case "iptable":
		return runIPTable(ctx, rest, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "version":
		return runVersion(rest, stdout, stderr)
	case "-s", "--server":
		return errors.New("-s alone is P2PRC's server; with this p2prc add --reverse-proxy (run a relay) or --connect-reverse-proxy HOST:PORT (run a node)")
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q; run p2prc --help for the list", cmd)
}

const usage = `p2prc: a relay that lets machines behind NAT serve the internet.

Commands:
  p2prc relay     run a relay on a machine with a public address
  p2prc node      offer local services through a relay
  p2prc mappings  list the mappings in the state dir (--json: the file itself;
                  --relay HOST:PORT: ask a live relay for this node's)
  p2prc relays    list the relays this machine knows, fastest first;
                  'relays add HOST:PORT' adds one, 'relays probe' measures them all
  p2prc iptable   list P2PRC's IP table
  p2prc demo      run relay, node and a web page on this machine, then exit
  p2prc bench     measure the relay path beside the direct one, on this machine
  p2prc version   print the version
Run 'p2prc COMMAND --help' for a command's flags and their defaults.

Examples:
  # On a VPS with the public address 203.0.113.7:
  p2prc relay --public-host 203.0.113.7 --ports 30000-30999
  # (it stores a fresh token in ~/.p2prc/relay.token; copy that file to the node,
  #  and logs its TLS certificate's fingerprint, which the node pins)

  # On a machine behind NAT, exposing its SSH server and a DNS server:
  P2PRC_TOKEN="$(cat relay.token)" p2prc node --relay 203.0.113.7:8700 \
      --relay-fingerprint FINGERPRINT --expose tcp:22 --expose udp:53=30053

  # Or let the node take the fastest relay it knows (see p2prc relays):
  p2prc relays add 203.0.113.7:8700
  p2prc node --relay auto --expose tcp:22 --token-file relay.token

  # The P2PRC spellings work too:
  p2prc -s --reverse-proxy
  p2prc -s --connect-reverse-proxy 203.0.113.7:8700 --token-file relay.token
  p2prc --view-rpm
  p2prc --view-rps
`
