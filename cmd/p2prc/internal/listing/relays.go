package listing

import (
	"fmt"
	"io"
	"net"
	"text/tabwriter"
	"time"

	"github.com/p2prc/p2prc/iptable"
	"github.com/p2prc/p2prc/registry"
	"github.com/p2prc/p2prc/tunnel"
)

// Relays prints the relay registry, fastest first as given.
func Relays(w io.Writer, list []registry.Server, now time.Time) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no relays known; add one with: p2prc relays add HOST:PORT")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tLATENCY (ms)\tLAST SEEN\tSOURCE")
	for _, sv := range list {
		source := "added here"
		if sv.Learnt {
			source = "learnt from a peer (relays add to use it)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", dash(sv.Name), sv.Address, millis(sv.Latency), age(now, sv.LastSeen), source)
	}
	tw.Flush()
}

// Probes prints what probing found.
func Probes(w io.Writer, results []tunnel.ProbeResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tLATENCY (ms)\tRESULT")
	for _, r := range results {
		result := fmt.Sprintf("ok, smallest of %d round trips", r.Pings)
		if r.Pings == 1 {
			result = "ok, hello to challenge (no token: one round trip)"
		}
		if r.Err != nil {
			result = "unreachable: " + r.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", dash(r.Name), r.Address, millis(r.Latency), result)
	}
	tw.Flush()
}

// IPTable prints P2PRC's IP table in file order.
func IPTable(w io.Writer, entries []iptable.Entry) {
	if len(entries) == 0 {
		fmt.Fprintln(w, "the IP table is empty")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tADDRESS\tNAME\tUDP PORT\tLATENCY (ms)")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", kind(e), address(e), dash(e.Name), dash(e.UDPServerPort), millis(e.Latency))
	}
	tw.Flush()
}

// kind says how a machine in the IP table is reached.
func kind(e iptable.Entry) string {
	switch {
	case e.ProxyServer:
		return "relay"
	case e.EscapeImplementation == iptable.EscapeImplementation:
		return "relayed"
	case e.EscapeImplementation == "FRP":
		return "frp"
	case e.NAT:
		return "behind-nat"
	}
	return "public"
}

// address is where P2PRC dials the machine: IPV6 first, as P2PRC does.
func address(e iptable.Entry) string {
	host := e.IPV4
	if e.IPV6 != "" {
		host = e.IPV6
	}
	switch {
	case host == "":
		return "-"
	case e.ServerPort == "":
		return host
	}
	return net.JoinHostPort(host, e.ServerPort)
}

// millis shows a latency in milliseconds; "-" when never measured.
func millis(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
}
