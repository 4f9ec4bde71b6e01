package registry

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Server is a relay this machine knows.
type Server struct {
	Name        string        `json:"Server_name"`
	Address     string        `json:"Address"`                   // host:port of the relay's control listener
	Latency     time.Duration `json:"Latency"`                   // ns, smallest measured RTT; 0 = never measured
	LastSeen    time.Time     `json:"Last_seen,omitzero"`        // last successful connection; zero = never
	Fingerprint string        `json:"TLS_fingerprint,omitempty"` // SHA-256 of the relay's certificate, hex
	// Learnt marks a relay heard of from a peer that nobody on this machine
	// has vouched for (relays add, or --relay naming it): no token is sent
	// to it and --relay auto does not use it, so a peer cannot make this
	// machine hand its token's MACs to an address of the peer's choosing.
	Learnt bool `json:"Learnt_from_peer,omitempty"`
}

// ServerFile is the shape of reverse_proxy_server.json.
type ServerFile struct {
	Servers []Server `json:"reverse_proxy_servers"`
}

// Validate reports a malformed entry or two entries for one address.
// jsonfile.Load calls it, so such a file is reported as corrupt.
func (f ServerFile) Validate() error {
	_, err := indexServers(f.Servers)
	return err
}

func indexServers(ss []Server) (map[string]Server, error) {
	byAddr := make(map[string]Server, len(ss))
	for i, sv := range ss {
		if err := sv.check(); err != nil {
			return nil, fmt.Errorf("server %d: %w", i+1, err)
		}
		if _, dup := byAddr[sv.Address]; dup {
			return nil, fmt.Errorf("server %d: %w: address %q appears twice", i+1, ErrInvalid, sv.Address)
		}
		byAddr[sv.Address] = sv
	}
	return byAddr, nil
}

func (sv Server) check() error {
	if err := checkAddress(sv.Address); err != nil {
		return err
	}
	if sv.Latency < 0 {
		return fmt.Errorf("%w: latency %v is negative", ErrInvalid, sv.Latency)
	}
	return nil
}

// checkAddress accepts host:port with a non-empty host and port 1..65535.
func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: address %q is not host:port", ErrInvalid, addr)
	}
	if host == "" || strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("%w: address %q has no usable host", ErrInvalid, addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] < '0' || port[0] > '9' {
		return fmt.Errorf("%w: address %q needs a port in 1-65535", ErrInvalid, addr)
	}
	return nil
}
