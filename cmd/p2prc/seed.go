package main

import "strings"

// defaultSeedExpose is what a node started the P2PRC way exposes when it is
// given no --expose: P2PRC's own server port.
const defaultSeedExpose = "tcp:8088"

// translateSeed turns P2PRC's original spellings into subcommands:
//
//	p2prc -s --reverse-proxy                   → p2prc relay
//	p2prc -s --connect-reverse-proxy HOST:PORT → p2prc node --relay HOST:PORT [--expose tcp:8088]
//	p2prc --view-rpm | --view-reverse-proxy-mapping → p2prc mappings
//	p2prc --view-rps | --view-reverse-proxy-servers → p2prc relays
//
// Other flags are passed on. ok is false when args use none of these.
func translateSeed(args []string) (out []string, ok bool) {
	var rest []string
	cmd, relay := "", ""
	hasExpose := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-s" || a == "--server":
			// P2PRC's "run as a server": implied by the commands below.
		case a == "--reverse-proxy":
			cmd = "relay"
		case a == "--connect-reverse-proxy":
			cmd = "node"
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				relay = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "--connect-reverse-proxy="):
			cmd, relay = "node", strings.TrimPrefix(a, "--connect-reverse-proxy=")
		case a == "--view-rpm" || a == "--view-reverse-proxy-mapping":
			cmd = "mappings"
		case a == "--view-rps" || a == "--view-reverse-proxy-servers":
			cmd = "relays"
		default:
			if a == "--expose" || strings.HasPrefix(a, "--expose=") {
				hasExpose = true
			}
			rest = append(rest, a)
		}
	}
	if cmd == "" {
		return nil, false
	}
	if cmd == "node" && relay == "" {
		relay = "-" // the node then says: --relay "-": give the relay's address as HOST:PORT
	}
	out = []string{cmd}
	if cmd == "node" {
		out = append(out, "--relay", relay)
		if !hasExpose {
			out = append(out, "--expose", defaultSeedExpose)
		}
	}
	return append(out, rest...), true
}
