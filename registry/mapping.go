package registry

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Mapping is one public port on a relay, carried back to a node's local service.
type Mapping struct {
	ServerName string    `json:"Server_name"`             // the relay's name
	Address    string    `json:"Address"`                 // the relay's public host (no port)
	Type       string    `json:"Type"`                    // "TCP" or "UDP"
	BlindPort  int       `json:"blind_port"`              // the public port on the relay
	Owner      string    `json:"Owner,omitempty"`         // node identity (hex fingerprint of its public key)
	NodeName   string    `json:"Node_name,omitempty"`     // the node's human name
	Local      string    `json:"Local_address,omitempty"` // the node's local target host:port
	Created    time.Time `json:"Created"`
	LastSeen   time.Time `json:"Last_seen"` // last time the owning node was connected
}

// Network returns "tcp" or "udp" for the mapping's Type, "" if Type is neither.
func (m Mapping) Network() string {
	switch TypeOf(m.Type) {
	case "TCP":
		return "tcp"
	case "UDP":
		return "udp"
	}
	return ""
}

// PublicAddr is where visitors reach the mapping: the relay's host and BlindPort.
func (m Mapping) PublicAddr() string {
	return net.JoinHostPort(m.Address, strconv.Itoa(m.BlindPort))
}

// TypeOf returns the file's spelling of a network: "tcp" gives "TCP" and
// "udp" gives "UDP", in any case; anything else gives "".
func TypeOf(network string) string {
	switch strings.ToLower(network) {
	case "tcp":
		return "TCP"
	case "udp":
		return "UDP"
	}
	return ""
}

// mappingKey identifies a mapping in a table: one per public port and type.
type mappingKey struct {
	typ  string
	port int
}

func keyOf(network string, port int) mappingKey {
	return mappingKey{typ: TypeOf(network), port: port}
}

// check validates m and returns it with Type in the file's spelling.
func (m Mapping) check() (Mapping, error) {
	typ := TypeOf(m.Type)
	if typ == "" {
		return m, fmt.Errorf("%w: type %q is not TCP or UDP", ErrInvalid, m.Type)
	}
	if m.BlindPort < 1 || m.BlindPort > 65535 {
		return m, fmt.Errorf("%w: port %d is outside 1-65535", ErrInvalid, m.BlindPort)
	}
	m.Type = typ
	return m, nil
}

// MappingFile is the shape of reverse_proxy_mapping.json.
type MappingFile struct {
	Mappings []Mapping `json:"reverse_proxy_mappings"`
}

// Validate reports a malformed entry or two entries for one port and type.
// jsonfile.Load calls it, so such a file is reported as corrupt.
func (f MappingFile) Validate() error {
	_, err := indexMappings(f.Mappings)
	return err
}

// indexMappings checks ms and keys them by (Type, BlindPort).
func indexMappings(ms []Mapping) (map[mappingKey]Mapping, error) {
	byKey := make(map[mappingKey]Mapping, len(ms))
	for i, m := range ms {
		m, err := m.check()
		if err != nil {
			return nil, fmt.Errorf("mapping %d: %w", i+1, err)
		}
		k := keyOf(m.Type, m.BlindPort)
		if _, dup := byKey[k]; dup {
			return nil, fmt.Errorf("mapping %d: %w: port %d/%s appears twice", i+1, ErrInvalid, m.BlindPort, m.Type)
		}
		byKey[k] = m
	}
	return byKey, nil
}
