package main

import (
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
	"github.com/p2prc/p2prc/registry/secret"
	"github.com/p2prc/p2prc/tunnel"
)

// relayTLSFlags are a relay's --tls-cert, --tls-key and --insecure-plaintext.
type relayTLSFlags struct {
	cert, key string
	plaintext bool
}

func (f *relayTLSFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.cert, "tls-cert", "", "PEM certificate chain for the control port, e.g. issued by a CA (default: a self-signed one, created in the state dir as "+secret.CertFileName+")")
	fs.StringVar(&f.key, "tls-key", "", "PEM private key of --tls-cert")
	fs.BoolVar(&f.plaintext, "insecure-plaintext", false, "no TLS on the control port: nodes must pass it too, and anyone on the path can read and change what they say")
}

// load returns the relay's TLS configuration (nil with --insecure-plaintext)
// and logs the certificate's fingerprint, which nodes pin.
func (f *relayTLSFlags) load(dir, name string, log *slog.Logger) (*tls.Config, error) {
	switch {
	case f.plaintext && (f.cert != "" || f.key != ""):
		return nil, errors.New("--insecure-plaintext turns TLS off; drop it or --tls-cert/--tls-key")
	case f.plaintext:
		return nil, nil
	case (f.cert == "") != (f.key == ""):
		return nil, errors.New("give --tls-cert and --tls-key together")
	}
	var cert tls.Certificate
	var err error
	if f.cert != "" {
		if cert, err = secret.LoadCertificate(f.cert, f.key); err != nil {
			return nil, err
		}
		log.Info("TLS certificate loaded; nodes check it against their CAs, or pin it", "file", f.cert, "fingerprint", mux.Fingerprint(cert.Certificate[0]))
	} else {
		path := filepath.Join(dir, secret.CertFileName)
		var created bool
		if cert, created, err = secret.LoadOrCreateCertificate(path, name); err != nil {
			return nil, err
		}
		fp := mux.Fingerprint(cert.Certificate[0])
		if created {
			log.Warn("created this relay's TLS certificate; keep the file: nodes pin its fingerprint, give it to them with --relay-fingerprint", "file", path, "fingerprint", fp)
		} else {
			log.Info("TLS certificate; nodes pin its fingerprint with --relay-fingerprint", "file", path, "fingerprint", fp)
		}
	}
	return mux.ServerTLS(cert), nil
}

// limitFlags are a relay's limits, each with its default.
type limitFlags struct{ l tunnel.Limits }

func (f *limitFlags) add(fs *pflag.FlagSet) {
	d := tunnel.DefaultLimits()
	fs.IntVar(&f.l.SessionsPerAddress, "max-sessions-per-address", d.SessionsPerAddress, "connections from one address (IPv6: one /64), handshakes included")
	fs.IntVar(&f.l.PendingHandshakes, "max-pending-handshakes", d.PendingHandshakes, "connections from everyone still in their handshake; more are closed at once")
	fs.IntVar(&f.l.AuthFailuresPerMinute, "max-auth-failures", d.AuthFailuresPerMinute, "failed authentications per address per minute; beyond it the address waits")
	fs.IntVar(&f.l.MappingsPerNode, "max-mappings-per-node", d.MappingsPerNode, "mappings one node may hold, leased ones included")
	fs.IntVar(&f.l.Mappings, "max-mappings", d.Mappings, "mappings the whole relay may hold")
	fs.IntVar(&f.l.StreamsPerSession, "max-streams-per-session", d.StreamsPerSession, "visitor connections in flight to one node; more are refused")
	fs.IntVar(&f.l.MaxFrameSize, "max-frame-size", d.MaxFrameSize, "largest control message a node may send, in bytes")
}

// askFlags are what a command that asks a live relay something needs: how
// long to wait, the token, and how to trust the relay.
type askFlags struct {
	timeout *time.Duration
	tok     tokenFlags
	tls     nodeTLSFlags
}

func (f *askFlags) add(fs *pflag.FlagSet, timeout time.Duration, timeoutHelp string) {
	f.timeout = fs.Duration("timeout", timeout, timeoutHelp)
	f.tok.add(fs)
	f.tls.add(fs)
}

// queryNode is a node that only asks relays (listings, probes), trusting
// them as the flags say. With record, what it learns of them (latency,
// pins) is kept in relays.
func (f *askFlags) queryNode(relays *registry.Servers, token []byte, key ed25519.PrivateKey, record bool) (*tunnel.Node, error) {
	nodeTLS, err := f.tls.load(relays)
	if err != nil {
		return nil, err
	}
	name, _ := os.Hostname()
	cfg := tunnel.NodeConfig{Name: name, Token: token, Key: key, TLS: nodeTLS, DialTimeout: *f.timeout, HandshakeTimeout: *f.timeout}
	if record {
		cfg.Relays = relays
	}
	return tunnel.NewQueryNode(cfg)
}

// nodeTLSFlags are a node's --relay-fingerprint and --insecure-plaintext.
type nodeTLSFlags struct {
	fingerprint string
	plaintext   bool
}

func (f *nodeTLSFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.fingerprint, "relay-fingerprint", "", "the relay's certificate fingerprint (SHA-256, as the relay prints it); default: the one stored in "+registry.ServerFileName+", else trust on first use and store it")
	fs.BoolVar(&f.plaintext, "insecure-plaintext", false, "no TLS to the relay (which must run with it too): anyone on the path can read and change what node and relay say")
}

// load returns the node's TLS policy (nil with --insecure-plaintext), with
// pins kept in pins, the state dir's reverse_proxy_server.json (the same
// table the relay registry uses: one file, one writer).
func (f *nodeTLSFlags) load(pins *registry.Servers) (*tunnel.NodeTLS, error) {
	if f.plaintext {
		if f.fingerprint != "" {
			return nil, errors.New("--insecure-plaintext turns TLS off, so there is no certificate for --relay-fingerprint to pin; drop one of them")
		}
		return nil, nil
	}
	t := &tunnel.NodeTLS{}
	if f.fingerprint != "" {
		fp, err := mux.ParseFingerprint(f.fingerprint)
		if err != nil {
			return nil, fmt.Errorf("--relay-fingerprint: %w", err)
		}
		t.Fingerprint = fp
	}
	t.Pins = pins
	return t, nil
}
