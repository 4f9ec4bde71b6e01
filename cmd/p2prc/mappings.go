package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/p2prc/p2prc/cmd/p2prc/internal/listing"
	"github.com/p2prc/p2prc/registry"
)

func runMappings(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("mappings", "mappings [--state DIR] [--json]", stderr)
	state := stateFlag(fs)
	asJSON := fs.Bool("json", false, "print the mapping file's JSON instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	dir, err := stateDir(*state)
	if err != nil {
		return err
	}
	maps, err := registry.OpenMappings(filepath.Join(dir, registry.MappingFileName))
	if err != nil {
		return err
	}
	list := maps.List()
	if *asJSON {
		b, err := json.MarshalIndent(registry.MappingFile{Mappings: list}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	listing.Mappings(stdout, list, time.Now())
	return nil
}
