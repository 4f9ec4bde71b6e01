package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/p2prc/p2prc/portalloc"
	"github.com/p2prc/p2prc/registry"
	"github.com/p2prc/p2prc/registry/secret"
	"github.com/p2prc/p2prc/tunnel"
)

// Defaults of a relay.
const (
	defaultListen = ":8700"
	defaultPorts  = "30000-39999"
)

func runRelay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("relay", "relay [flags]", stderr)
	listen := fs.String("listen", defaultListen, "address nodes connect to")
	ports := fs.String("ports", defaultPorts, "range public ports are granted from, LO-HI")
	allowPrivileged := fs.Bool("allow-privileged-ports", false, "let --ports include ports below 1024")
	publicHost := fs.String("public-host", "", "host visitors use to reach granted ports (default: this machine's first global address)")
	bindHost := fs.String("bind-host", "", "address public ports listen on (default: all interfaces)")
	name := fs.String("name", "", "this relay's name in grants and files (default: the host name)")
	lease := fs.Duration("lease", 24*time.Hour, "how long a mapping stays reserved for its node after the node goes away")
	peerTimeout := fs.Duration("peer-timeout", 30*time.Second, "a node silent this long is judged dead and its session closed")
	handshakeTimeout := fs.Duration("handshake-timeout", 10*time.Second, "a node must finish its handshake within this")
	udpIdle := fs.Duration("udp-idle", 60*time.Second, "a UDP flow (one visitor address) quiet this long expires, at relay and node")
	udpMaxFlows := fs.Int("udp-max-flows", 1024, "most UDP flows per mapping; at the cap a new visitor replaces the oldest flow quiet for 1s, or its datagrams are dropped and counted")
	var tok tokenFlags
	tok.add(fs)
	var tf relayTLSFlags
	tf.add(fs)
	var lim limitFlags
	lim.add(fs)
	var df daemonFlags
	df.add(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := df.log.logger(stderr)
	if err != nil {
		return err
	}
	if *bindHost != "" {
		// A host the relay cannot listen on would only show as every grant failing.
		probe, err := net.Listen("tcp", net.JoinHostPort(*bindHost, "0"))
		if err != nil {
			return fmt.Errorf("--bind-host %q: the relay cannot listen there: %v", *bindHost, err)
		}
		probe.Close()
	}
	rng, err := portalloc.ParseRange(*ports, *allowPrivileged)
	if err != nil {
		return fmt.Errorf("--ports: %w", err)
	}
	dir, err := stateDir(*df.state)
	if err != nil {
		return err
	}
	token, ok, err := tok.load()
	if err != nil {
		return err
	}
	if !ok {
		path := filepath.Join(dir, secret.TokenFileName)
		var created bool
		if token, created, err = secret.LoadOrCreateToken(path); err != nil {
			return err
		}
		if created {
			log.Warn("no token given: generated one; copy this file to each node and pass it with --token-file, or set P2PRC_TOKEN from it", "file", path)
		} else {
			log.Info("using the token stored in the state dir", "file", path)
		}
	}
	maps, err := registry.OpenMappings(filepath.Join(dir, registry.MappingFileName))
	if err != nil {
		return err
	}
	relays, table, err := openRelaysAndTable(dir, *df.ipTable)
	if err != nil {
		return err
	}
	if *name == "" {
		*name, _ = os.Hostname()
	}
	tlsConfig, err := tf.load(dir, *name, log)
	if err != nil {
		return err
	}
	if *publicHost == "" {
		*publicHost = defaultPublicHost(*listen)
		log.Info("no --public-host given; advertising this machine's address", "public_host", *publicHost)
	}
	relay, err := tunnel.NewRelay(tunnel.RelayConfig{
		Name:       *name,
		PublicHost: *publicHost,
		Token:      token,
		Ports:      rng,
		BindHost:   *bindHost,
		Mappings:   maps,
		Relays:     relays,
		IPTable:    table,
		Lease:      *lease,
		Logger:     log,
		Observer:   df.metrics.observer(),

		PeerTimeout:      *peerTimeout,
		HandshakeTimeout: *handshakeTimeout,
		TLS:              tlsConfig,
		Limits:           lim.l,
		UDPIdle:          *udpIdle,
		UDPMaxFlows:      *udpMaxFlows,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	stopStatus, err := df.metrics.serve(relay, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopStatus()
	log.Info("relay ready", "listen", ln.Addr().String(), "public_host", *publicHost, "ports", rng.String(), "name", *name, "state", dir)
	return relay.Serve(ctx, ln)
}

// defaultPublicHost guesses the host visitors use: the --listen host if it
// names one, else this machine's first global unicast address (IPv4 first),
// else 127.0.0.1. Nothing is sent anywhere to find it.
func defaultPublicHost(listen string) string {
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			return host
		}
	}
	addrs, _ := net.InterfaceAddrs()
	var v6 string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || !ipn.IP.IsGlobalUnicast() {
			continue
		}
		if ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
		if v6 == "" {
			v6 = ipn.IP.String()
		}
	}
	if v6 != "" {
		return v6
	}
	return "127.0.0.1"
}
