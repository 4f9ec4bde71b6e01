// Package iptable reads and writes P2PRC's IP table, ip_table.json: the list of
// machines a P2PRC node knows, each with the address and port where its P2PRC
// server answers.
//
// The file is {"ip_address": [entry, ...]}. Entries are written in today's
// P2PRC format (keys Name, MachineUsername, IPV4, IPV6, Latency, Download,
// Upload, ServerPort, UDPServerPort, BareMetalSSHPort, NAT,
// EscapeImplementation, ProxyServer, UnSafeMode, PublicKey, CustomInformation,
// with the JSON types of P2PRC's p2p.IpAddress) so that P2PRC reads what we
// write. Keys are matched case-insensitively on reading, exactly as P2PRC's
// encoding/json does, so the 2021 format's lowercase keys (ipv4, ipv6,
// latency, download, upload, serverport) fill today's fields. Keys this
// package does not know, in an entry or at the top level, are kept and
// written back unchanged.
//
// # How a relayed node is advertised
//
// P2PRC reads NAT as "the address in this entry cannot be dialled from
// outside": its RemoveDuplicates drops every entry with NAT true and
// EscapeImplementation "None", and when P2PRC escapes NAT itself (with frp) it
// writes the node as IPV4 = the relay, ServerPort = the port the relay opened,
// NAT false, EscapeImplementation "FRP". A node behind our relay is written the
// same way, with NAT false, because the address it advertises — the relay's
// public address and granted port — is reachable from anywhere, and with
// EscapeImplementation set to [EscapeImplementation] so P2PRC and people can
// tell how. IPV6 stays empty: P2PRC dials IPV6 first when it is set, and the
// node's own IPv6 address is not what the relay exposes. [RelayedEntry] builds
// such an entry. A relay marks its own entry ProxyServer.
package iptable

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"time"

	"github.com/p2prc/p2prc/registry/jsonfile"
)

// FileName is the name P2PRC gives its IP table file. P2PRC keeps its own at
// $P2PRC/p2p/iptable/ip_table.json; p2prc keeps one in its state directory.
const FileName = "ip_table.json"

// EscapeImplementation is the value a node reachable through a p2prc relay
// writes in its entry's EscapeImplementation (P2PRC's own frp path writes
// "FRP"; a public node writes "").
const EscapeImplementation = "p2prc-relay"

// Limits. They keep a peer, or a damaged file, from growing the table or the
// memory needed to read it without bound.
const (
	// MaxEntries is the most entries Merge lets the table hold; entries
	// beyond it are dropped. Upsert, which records what this machine knows
	// first-hand, is not limited by it.
	MaxEntries = 4096

	// MaxFileSize is the largest ip_table.json Load reads and Save writes.
	MaxFileSize = 16 << 20

	// maxDecodedEntries is the most entries a document may hold. It leaves
	// room above MaxEntries for Upsert and for tables P2PRC grew itself.
	maxDecodedEntries = 8 * MaxEntries
)

// Errors callers may branch on, with errors.Is.
var (
	// ErrCorrupt is wrapped by the error Load returns when the file exists
	// but is not an IP table. The message names the file, line and column;
	// the file is left as it is.
	ErrCorrupt = errors.New("not a valid IP table")

	// ErrTooLarge is wrapped when a file, or a table about to be saved, is
	// bigger than MaxFileSize or holds too many entries to read back.
	ErrTooLarge = errors.New("IP table too large")
)

// Table is the content of one ip_table.json. The zero value is an empty table,
// ready to use. A Table is not safe for concurrent use.
type Table struct {
	// Entries are the machines, in file order. Nil means none.
	Entries []Entry

	// Extra holds the top-level keys other than "ip_address", with their
	// values exactly as read; they are written back after "ip_address", in
	// key order. Nil means none. A key that matches "ip_address" in any case
	// is not written: Entries is.
	Extra map[string]json.RawMessage
}

// Entry is one machine in the table: P2PRC's p2p.IpAddress, field for field,
// with the same JSON types. Every field's zero value means "not known" and is
// written as P2PRC writes it ("" , 0 or false); all known keys are always
// written, in P2PRC's order.
type Entry struct {
	// Name is the machine's name (P2PRC's MachineName).
	Name string
	// MachineUsername is the account P2PRC runs under on that machine.
	MachineUsername string
	// IPV4 is the IPv4 address clients dial. For a node behind a relay it is
	// the relay's public address.
	IPV4 string
	// IPV6 is the IPv6 address clients dial. P2PRC prefers it to IPV4 when it
	// is set, and two entries with the same IPV6 are the same machine.
	IPV6 string
	// Latency is the round trip to the machine as measured by whoever wrote
	// the entry; zero means not measured. Written as integer nanoseconds.
	Latency time.Duration
	// Download and Upload are the results of P2PRC's speed test against the
	// machine; zero means not measured.
	Download float64
	Upload   float64
	// ServerPort is the TCP port of the machine's P2PRC server, as a decimal
	// string (P2PRC's type). For a node behind a relay it is the port the
	// relay granted. On reading, a JSON integer is accepted too.
	ServerPort string
	// UDPServerPort is the UDP port of the machine's P2PRC server, as
	// ServerPort.
	UDPServerPort string
	// BareMetalSSHPort is the port of the machine's SSH server when P2PRC
	// runs in bare-metal mode, as ServerPort.
	BareMetalSSHPort string
	// NAT is true when IPV4:ServerPort cannot be dialled from outside. A node
	// reachable through a relay writes false; see the package comment. On
	// reading, the strings "True" and "False" of older P2PRC are accepted.
	NAT bool
	// EscapeImplementation names how a machine behind NAT is reached:
	// "" for a public machine, "FRP" for P2PRC's frp path,
	// EscapeImplementation for a p2prc relay, "None" for not at all.
	EscapeImplementation string
	// ProxyServer is true for a machine that relays for others. On reading,
	// "True" and "False" are accepted, as for NAT.
	ProxyServer bool
	// UnSafeMode is true when the machine lets network peers log in with
	// the public keys they publish. Read as NAT.
	UnSafeMode bool
	// PublicKey is the machine's SSH public key, as P2PRC publishes it.
	PublicKey string
	// CustomInformation is free text an application attached to the entry.
	CustomInformation string

	// Extra holds the entry's keys that are none of the above, with their
	// values exactly as read; they are written after the known keys, in key
	// order. Nil means none. A key that matches a known key in any case is
	// not written, because P2PRC would read it into that field.
	Extra map[string]json.RawMessage
}

// RelayedEntry returns the entry that advertises a node named name as
// reachable through a relay: IPV4 is the relay's public host, ServerPort the
// port the relay granted, NAT false and EscapeImplementation set to
// EscapeImplementation. The caller adds whatever else it knows.
func RelayedEntry(name, relayHost string, port int) Entry {
	return Entry{
		Name:                 name,
		IPV4:                 relayHost,
		ServerPort:           strconv.Itoa(port),
		EscapeImplementation: EscapeImplementation,
	}
}

// Load reads the IP table at path. A missing file, or one holding only white
// space, is an empty table. A file that is not an IP table gives an error
// wrapping ErrCorrupt that names the file, line and column; a file larger
// than MaxFileSize gives one wrapping ErrTooLarge. Load never writes.
func Load(path string) (*Table, error) {
	data, err := jsonfile.ReadAtMost(path, MaxFileSize)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &Table{}, nil
	case errors.Is(err, jsonfile.ErrTooLarge):
		return nil, fmt.Errorf("iptable: %s is larger than %d bytes: %w", path, MaxFileSize, ErrTooLarge)
	case err != nil:
		return nil, fmt.Errorf("iptable: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &Table{}, nil
	}
	t, err := decodeTable(data)
	if err != nil {
		return nil, locate(path, data, err)
	}
	return t, nil
}

// Save writes the table to path in today's format, atomically: the data goes
// to a temporary file in the same directory, which is synced, made mode 0600
// and renamed over path, and then the directory is synced. A crash at any
// moment leaves the old file or the new one; on failure the temporary file is
// removed. The directory must exist.
func (t *Table) Save(path string) error {
	data, err := t.Encode()
	if err != nil {
		return fmt.Errorf("iptable: save %s: %w", path, err)
	}
	if len(data) > MaxFileSize || len(t.Entries) > maxDecodedEntries {
		return fmt.Errorf("iptable: save %s: %d entries, %d bytes: %w", path, len(t.Entries), len(data), ErrTooLarge)
	}
	if err := jsonfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("iptable: %w", err) // WriteFile names the file
	}
	return nil
}

// Encode renders the table as Save writes it (and as a listing prints it):
// one-space indentation, as P2PRC writes, HTML characters left as they are,
// and a final newline.
func (t *Table) Encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(t); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
