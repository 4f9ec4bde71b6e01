package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/p2prc/p2prc/cmd/p2prc/internal/listing"
	"github.com/p2prc/p2prc/registry"
	"github.com/p2prc/p2prc/registry/secret"
)

func runMappings(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("mappings", "mappings [--state DIR] [--json] [--relay HOST:PORT]", stderr)
	state := stateFlag(fs)
	asJSON := fs.Bool("json", false, "print the mapping file's JSON instead of a table")
	relay := fs.String("relay", "", "ask this live relay for the mappings it holds for this node (the identity in --state), instead of reading the file")
	var ask askFlags
	ask.add(fs, 10*time.Second, "with --relay: how long the relay has to answer")
	if err := parse(fs, args); err != nil {
		return err
	}
	dir, err := stateDir(*state)
	if err != nil {
		return err
	}
	var list []registry.Mapping
	if *relay != "" {
		list, err = askRelay(ctx, dir, *relay, &ask)
	} else {
		var maps *registry.Mappings
		maps, err = registry.OpenMappings(filepath.Join(dir, registry.MappingFileName))
		if maps != nil {
			list = maps.List()
		}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, registry.MappingFile{Mappings: list})
	}
	listing.Mappings(stdout, list, time.Now())
	return nil
}

// askRelay lists the mappings relay holds for the node whose identity is in
// dir, in a query session that leaves a running node undisturbed.
func askRelay(ctx context.Context, dir, relay string, ask *askFlags) ([]registry.Mapping, error) {
	token, ok, err := ask.tok.load()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("--relay needs the relay's token: pass --token-file FILE or set %s", tokenEnv)
	}
	keyPath := filepath.Join(dir, secret.KeyFileName)
	if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no node identity in %s: give the --state of the node whose mappings you want", dir)
	}
	key, _, err := secret.LoadOrCreateKey(keyPath)
	if err != nil {
		return nil, err
	}
	relays, err := openRelays(dir)
	if err != nil {
		return nil, err
	}
	n, err := ask.queryNode(relays, token, key, false)
	if err != nil {
		return nil, err
	}
	return n.ListMappings(ctx, relay)
}
