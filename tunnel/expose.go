package tunnel

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Expose is one local service a node offers through the relay, parsed from
// `--expose tcp|udp:[HOST:]PORT[=REMOTE_PORT]`.
type Expose struct {
	Network    string // "tcp" or "udp"
	Local      string // host:port the node dials; the host defaults to 127.0.0.1
	RemotePort int    // the public port asked for; 0 lets the relay choose
}

// ParseExpose parses an --expose value.
func ParseExpose(s string) (Expose, error) {
	bad := func(why string) (Expose, error) {
		return Expose{}, fmt.Errorf("--expose %q: %s; the form is tcp|udp:[HOST:]PORT[=REMOTE_PORT], e.g. tcp:8080 or udp:10.0.0.5:53=30053", s, why)
	}
	network, rest, ok := strings.Cut(s, ":")
	if !ok {
		return bad("missing tcp: or udp:")
	}
	network = strings.ToLower(network)
	if network != "tcp" && network != "udp" {
		return bad(fmt.Sprintf("unknown type %q", network))
	}
	e := Expose{Network: network}
	target, remote, hasRemote := strings.Cut(rest, "=")
	if hasRemote {
		p, err := parsePort(remote)
		if err != nil {
			return bad("remote port " + err.Error())
		}
		e.RemotePort = p
	}
	host, port := "127.0.0.1", target
	if strings.Contains(target, ":") {
		h, p, err := net.SplitHostPort(target)
		if err != nil {
			return bad(err.Error())
		}
		if h != "" {
			host = h
		}
		port = p
	}
	p, err := parsePort(port)
	if err != nil {
		return bad("local port " + err.Error())
	}
	e.Local = net.JoinHostPort(host, strconv.Itoa(p))
	return e, nil
}

// String gives the --expose form back.
func (e Expose) String() string {
	s := e.Network + ":" + e.Local
	if e.RemotePort != 0 {
		s += "=" + strconv.Itoa(e.RemotePort)
	}
	return s
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 || s != strconv.Itoa(p) {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return p, nil
}
