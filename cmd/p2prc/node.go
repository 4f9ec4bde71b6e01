package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/p2prc/p2prc/registry"
	"github.com/p2prc/p2prc/registry/secret"
	"github.com/p2prc/p2prc/tunnel"
)

func runNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node", "node --relay HOST:PORT|auto --expose SPEC [--expose SPEC ...] [flags]", stderr)
	relay := fs.String("relay", "", "the relay's address, HOST:PORT, or auto: the fastest relay in reverse_proxy_server.json that answers")
	exposes := fs.StringArray("expose", nil, "a local service to offer: tcp|udp:[HOST:]PORT[=REMOTE_PORT]; repeat for more")
	name := fs.String("name", "", "this node's name in the relay's listings (default: the host name)")
	once := fs.Bool("once", false, "exit when the session ends instead of reconnecting")
	peerTimeout := fs.Duration("peer-timeout", 30*time.Second, "a relay silent this long is judged dead and the node reconnects")
	maxBackoff := fs.Duration("max-backoff", 30*time.Second, "the longest wait between reconnect attempts (they start at 1s and double)")
	udpIdle := fs.Duration("udp-idle", 60*time.Second, "a UDP flow (one visitor) quiet this long expires and its socket to the local service is closed")
	udpMaxFlows := fs.Int("udp-max-flows", 1024, "most UDP flows per mapping this node accepts, whatever the relay allows")
	var tok tokenFlags
	tok.add(fs)
	var tf nodeTLSFlags
	tf.add(fs)
	releases := fs.StringArray("release", nil, "give up this node's mapping of a public port, tcp:PORT or udp:PORT, then exit (or go on with --expose); repeat for more")
	var df daemonFlags
	df.add(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := df.log.logger(stderr)
	if err != nil {
		return err
	}
	if *relay == "" {
		return errors.New("--relay HOST:PORT is required")
	}
	if err := tunnel.CheckRelayAddr(*relay); err != nil {
		return err
	}
	if len(*exposes) == 0 && len(*releases) == 0 {
		return errors.New("nothing to expose: add --expose tcp:PORT (or udp:PORT)")
	}
	var release []tunnel.PublicPort
	for _, s := range *releases {
		p, err := tunnel.ParsePublicPort(s)
		if err != nil {
			return err
		}
		release = append(release, p)
	}
	var list []tunnel.Expose
	for _, s := range *exposes {
		e, err := tunnel.ParseExpose(s)
		if err != nil {
			return err
		}
		list = append(list, e)
	}
	token, ok, err := tok.load()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("no token: copy the relay's %s here and pass --token-file FILE, or set %s", secret.TokenFileName, tokenEnv)
	}
	dir, err := stateDir(*df.state)
	if err != nil {
		return err
	}
	key, created, err := secret.LoadOrCreateKey(filepath.Join(dir, secret.KeyFileName))
	if err != nil {
		return err
	}
	if created {
		log.Info("created this node's identity key", "file", filepath.Join(dir, secret.KeyFileName))
	}
	maps, err := registry.OpenMappings(filepath.Join(dir, registry.MappingFileName))
	if err != nil {
		return err
	}
	relays, table, err := openRelaysAndTable(dir, *df.ipTable)
	if err != nil {
		return err
	}
	nodeTLS, err := tf.load(relays)
	if err != nil {
		return err
	}
	if *name == "" {
		*name, _ = os.Hostname()
	}
	node, err := tunnel.NewNode(tunnel.NodeConfig{
		Relay:    *relay,
		Exposes:  list,
		Name:     *name,
		Token:    token,
		Key:      key,
		Mappings: maps,
		Relays:   relays,
		IPTable:  table,
		Once:     *once,
		Logger:   log,
		Observer: df.metrics.observer(),
		TLS:      nodeTLS,
		Release:  release,

		PeerTimeout: *peerTimeout,
		MaxBackoff:  *maxBackoff,
		UDPIdle:     *udpIdle,
		UDPMaxFlows: *udpMaxFlows,
		OnReady: func(c tunnel.Connected) {
			for _, m := range c.Mappings {
				printMapping(stdout, m.Network(), m.Local, m.PublicAddr())
			}
		},
	})
	if err != nil {
		return err
	}
	stopStatus, err := df.metrics.serve(node, log)
	if err != nil {
		return err
	}
	defer stopStatus()
	defer onSignalPrintMappings(node, stdout)()
	log.Info("node starting", "relay", *relay, "id", node.ID(), "state", dir)
	return node.Run(ctx)
}
