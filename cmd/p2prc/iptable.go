package main

import (
	"context"
	"fmt"
	"io"

	"github.com/p2prc/p2prc/cmd/p2prc/internal/listing"
)

// runIPTable lists P2PRC's IP table.
func runIPTable(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("iptable", "iptable [--state DIR] [--ip-table PATH] [--json]", stderr)
	state := stateFlag(fs)
	ipTable := ipTableFlag(fs)
	asJSON := fs.Bool("json", false, "print the table as JSON, in P2PRC's format, instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	dir, err := stateDir(*state)
	if err != nil {
		return err
	}
	f, err := openIPTable(dir, *ipTable)
	if err != nil {
		return err
	}
	t, err := f.Read()
	if err != nil {
		return err
	}
	if *asJSON {
		b, err := t.Encode()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s", b)
		return err
	}
	listing.IPTable(stdout, t.Entries)
	return nil
}
