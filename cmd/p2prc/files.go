package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/p2prc/p2prc/iptable"
	"github.com/p2prc/p2prc/registry"
)

// ipTableFlag adds --ip-table.
func ipTableFlag(fs *pflag.FlagSet) *string {
	return fs.String("ip-table", "", "P2PRC's IP table to keep current, e.g. $P2PRC/p2p/iptable/ip_table.json (default: ip_table.json in the state dir)")
}

// openIPTable opens the IP table named by --ip-table, or the state dir's.
func openIPTable(dir, flag string) (*iptable.File, error) {
	path := flag
	if path == "" {
		path = filepath.Join(dir, iptable.FileName)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("--ip-table %s: its folder %s does not exist; create it or point --ip-table at P2PRC's table", path, filepath.Dir(path))
	}
	return iptable.Open(path)
}

// openRelaysAndTable opens what a relay or a node shares with P2PRC: the
// state dir's relay registry and the IP table.
func openRelaysAndTable(dir, ipTable string) (*registry.Servers, *iptable.File, error) {
	relays, err := openRelays(dir)
	if err != nil {
		return nil, nil, err
	}
	table, err := openIPTable(dir, ipTable)
	if err != nil {
		return nil, nil, err
	}
	return relays, table, nil
}

// openRelays opens the state dir's relay registry.
func openRelays(dir string) (*registry.Servers, error) {
	return registry.OpenServers(filepath.Join(dir, registry.ServerFileName))
}

// printJSON prints v as the registry files are written.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
