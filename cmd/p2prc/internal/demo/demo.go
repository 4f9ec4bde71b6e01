// Package demo runs the whole relay path on this machine and explains it:
// a web service, a relay, a node exposing the service, and a visitor that
// fetches the page through the relay.
package demo

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/p2prc/p2prc/cmd/p2prc/internal/listing"
	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/portalloc"
	"github.com/p2prc/p2prc/registry"
	"github.com/p2prc/p2prc/registry/secret"
	"github.com/p2prc/p2prc/tunnel"
)

// portRange is where the demo relay grants ports; busy ones are skipped.
const portRange = "61000-61999"

// page is what the demo's web service answers.
const page = "Hello from behind the NAT! This page was served by a local web service and fetched through the relay.\n"

// Run performs the demo, writing what happens to out. It uses a temporary
// state dir, which it removes, and leaves nothing running.
func Run(ctx context.Context, out io.Writer) (err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "p2prc-demo-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	fmt.Fprintln(out, "p2prc demo: the whole relay path, on 127.0.0.1 only.")
	fmt.Fprintln(out)

	svc, err := startService(&wg)
	if err != nil {
		return err
	}
	defer svc.Close()
	fmt.Fprintf(out, "1. A web service listens on %s. Think of it as a machine behind NAT.\n", svc.Addr())

	relayAddr, fingerprint, maps, err := startRelay(ctx, &wg, dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "2. A relay listens for nodes on %s and grants public ports from %s.\n", relayAddr, portRange)
	fmt.Fprintf(out, "   Nodes reach it over TLS 1.3; its certificate's fingerprint is\n   %s\n", fingerprint)

	nodeDir := filepath.Join(dir, "node") // the node's own state dir, as on another machine
	if err := os.Mkdir(nodeDir, 0o700); err != nil {
		return err
	}
	pins, err := registry.OpenServers(filepath.Join(nodeDir, registry.ServerFileName))
	if err != nil {
		return err
	}
	conn, err := startNode(ctx, &wg, relayAddr, svc.Addr().String(), pins)
	if err != nil {
		return err
	}
	public := conn.Mappings[0].PublicAddr()
	fmt.Fprintf(out, "3. A node dials out to the relay, authenticates, and exposes tcp:%s.\n", svc.Addr())
	if sv, ok := pins.Get(relayAddr); ok && sv.Fingerprint == fingerprint {
		fmt.Fprintf(out, "   It trusted the relay's certificate on first use and pinned its fingerprint in\n   its %s; from now on another certificate is refused.\n", registry.ServerFileName)
	}
	fmt.Fprintf(out, "   The relay granted %s: to the world, the node now is that address.\n", public)

	body, status, err := fetch(ctx, "http://"+public+"/")
	if err != nil {
		return fmt.Errorf("fetching the page through the relay: %w", err)
	}
	fmt.Fprintf(out, "4. A visitor fetches http://%s/ through the relay and gets %s:\n", public, status)
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		fmt.Fprintf(out, "   | %s\n", line)
	}
	if body != page {
		return errors.New("the page came back changed")
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "The relay's %s, the authority on which ports are taken:\n", registry.MappingFileName)
	listing.Mappings(out, maps.List(), time.Now())
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Done. Next: run 'p2prc relay' on a machine with a public address and 'p2prc node' behind NAT (see README.md).")
	return nil
}

// startService serves the demo page on a loopback port.
func startService(wg *sync.WaitGroup) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, page)
	}), ReadHeaderTimeout: 5 * time.Second}
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Serve(ln)
	}()
	return ln, nil
}

// startRelay starts a relay on a loopback port, with a self-signed
// certificate in dir; it stops when ctx ends. It returns the relay's
// address and its certificate's fingerprint.
func startRelay(ctx context.Context, wg *sync.WaitGroup, dir string) (string, string, *registry.Mappings, error) {
	rng, err := portalloc.ParseRange(portRange, false)
	if err != nil {
		return "", "", nil, err
	}
	maps, err := registry.OpenMappings(filepath.Join(dir, registry.MappingFileName))
	if err != nil {
		return "", "", nil, err
	}
	cert, _, err := secret.LoadOrCreateCertificate(filepath.Join(dir, secret.CertFileName), "demo-relay")
	if err != nil {
		return "", "", nil, err
	}
	relay, err := tunnel.NewRelay(tunnel.RelayConfig{
		Name: "demo-relay", PublicHost: "127.0.0.1", BindHost: "127.0.0.1",
		Token: demoToken, Ports: rng, Mappings: maps, TLS: mux.ServerTLS(cert),
	})
	if err != nil {
		return "", "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", nil, err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		relay.Serve(ctx, ln)
	}()
	return ln.Addr().String(), mux.Fingerprint(cert.Certificate[0]), maps, nil
}

// demoToken is the demo's shared secret; it never leaves this process.
var demoToken = []byte("p2prc-demo-token")

// startNode starts a node exposing local and waits for its grant.
func startNode(ctx context.Context, wg *sync.WaitGroup, relayAddr, local string, pins *registry.Servers) (tunnel.Connected, error) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ready := make(chan tunnel.Connected, 1)
	node, err := tunnel.NewNode(tunnel.NodeConfig{
		Relay: relayAddr, Name: "demo-node", Token: demoToken, Key: key,
		TLS:     &tunnel.NodeTLS{Pins: pins},
		Exposes: []tunnel.Expose{{Network: "tcp", Local: local}},
		OnReady: func(c tunnel.Connected) {
			select {
			case ready <- c:
			default:
			}
		},
	})
	if err != nil {
		return tunnel.Connected{}, err
	}
	failed := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		failed <- node.Run(ctx)
	}()
	select {
	case c := <-ready:
		return c, nil
	case err := <-failed:
		return tunnel.Connected{}, fmt.Errorf("the node stopped: %v", err)
	case <-ctx.Done():
		return tunnel.Connected{}, errors.New("the node did not get a port in time")
	}
}

// fetch GETs url and returns the body and the status line.
func fetch(ctx context.Context, url string) (string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", "", err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), resp.Proto + " " + resp.Status, err
}
