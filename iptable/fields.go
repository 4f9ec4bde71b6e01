package iptable

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A field is one known entry key: its spelling today, how to read its value
// into an Entry and what to write for it. Order is P2PRC's struct order, which
// is the order keys are written in.
type field struct {
	key    string
	decode func(e *Entry, raw []byte) error
	value  func(e *Entry) any
}

var fields = [...]field{
	stringField("Name", func(e *Entry) *string { return &e.Name }),
	stringField("MachineUsername", func(e *Entry) *string { return &e.MachineUsername }),
	stringField("IPV4", func(e *Entry) *string { return &e.IPV4 }),
	stringField("IPV6", func(e *Entry) *string { return &e.IPV6 }),
	{"Latency", func(e *Entry, raw []byte) error { return decodeDuration(raw, &e.Latency) },
		func(e *Entry) any { return int64(e.Latency) }},
	floatField("Download", func(e *Entry) *float64 { return &e.Download }),
	floatField("Upload", func(e *Entry) *float64 { return &e.Upload }),
	portField("ServerPort", func(e *Entry) *string { return &e.ServerPort }),
	portField("UDPServerPort", func(e *Entry) *string { return &e.UDPServerPort }),
	portField("BareMetalSSHPort", func(e *Entry) *string { return &e.BareMetalSSHPort }),
	boolField("NAT", func(e *Entry) *bool { return &e.NAT }),
	stringField("EscapeImplementation", func(e *Entry) *string { return &e.EscapeImplementation }),
	boolField("ProxyServer", func(e *Entry) *bool { return &e.ProxyServer }),
	boolField("UnSafeMode", func(e *Entry) *bool { return &e.UnSafeMode }),
	stringField("PublicKey", func(e *Entry) *string { return &e.PublicKey }),
	stringField("CustomInformation", func(e *Entry) *string { return &e.CustomInformation }),
}

// lookupField finds the known field a key names. Matching is
// case-insensitive, as encoding/json matches keys to struct fields, so a key
// means to us what it means to P2PRC (and the 2021 keys ipv4, ipv6, latency,
// download, upload and serverport name today's fields).
func lookupField(key string) *field {
	for i := range fields {
		if strings.EqualFold(fields[i].key, key) {
			return &fields[i]
		}
	}
	return nil
}

func stringField(key string, p func(*Entry) *string) field {
	return field{key,
		func(e *Entry, raw []byte) error { return decodeString(raw, p(e)) },
		func(e *Entry) any { return *p(e) }}
}

func portField(key string, p func(*Entry) *string) field {
	return field{key,
		func(e *Entry, raw []byte) error { return decodePort(raw, p(e)) },
		func(e *Entry) any { return *p(e) }}
}

func boolField(key string, p func(*Entry) *bool) field {
	return field{key,
		func(e *Entry, raw []byte) error { return decodeBool(raw, p(e)) },
		func(e *Entry) any { return *p(e) }}
}

func floatField(key string, p func(*Entry) *float64) field {
	return field{key,
		func(e *Entry, raw []byte) error { return decodeFloat(raw, p(e)) },
		func(e *Entry) any { return *p(e) }}
}

// The value decoders below leave the field as it is for null, as
// encoding/json does.

func decodeString(raw []byte, dst *string) error {
	if isNull(raw) {
		return nil
	}
	if raw[0] != '"' {
		return fmt.Errorf("want a string, got %s", quote(raw))
	}
	return json.Unmarshal(raw, dst)
}

// decodePort reads P2PRC's string port; a JSON integer is taken as its digits.
func decodePort(raw []byte, dst *string) error {
	if isNull(raw) {
		return nil
	}
	if isDigits(raw) {
		*dst = string(raw)
		return nil
	}
	if raw[0] != '"' {
		return fmt.Errorf("want a port number as a string, got %s", quote(raw))
	}
	return json.Unmarshal(raw, dst)
}

// decodeBool reads a JSON boolean, or the "True"/"False" strings older P2PRC
// versions wrote for NAT and ProxyServer.
func decodeBool(raw []byte, dst *bool) error {
	switch {
	case isNull(raw):
		return nil
	case string(raw) == "true":
		*dst = true
		return nil
	case string(raw) == "false":
		*dst = false
		return nil
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		switch strings.ToLower(s) {
		case "true":
			*dst = true
			return nil
		case "false", "":
			*dst = false
			return nil
		}
	}
	return fmt.Errorf("want true or false, got %s", quote(raw))
}

func decodeFloat(raw []byte, dst *float64) error {
	if isNull(raw) {
		return nil
	}
	if !isNumber(raw) {
		return fmt.Errorf("want a number, got %s", quote(raw))
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("number %s is out of range", quote(raw))
	}
	return nil
}

// decodeDuration reads a time.Duration as P2PRC writes it: integer nanoseconds.
func decodeDuration(raw []byte, dst *time.Duration) error {
	if isNull(raw) {
		return nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || !isNumber(raw) {
		return fmt.Errorf("want whole nanoseconds, got %s", quote(raw))
	}
	*dst = time.Duration(n)
	return nil
}

func isNull(raw []byte) bool { return string(raw) == "null" }

func isNumber(raw []byte) bool {
	return len(raw) > 0 && (raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9')
}

func isDigits(raw []byte) bool {
	for _, c := range raw {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(raw) > 0
}

// quote shows a value in an error message, cut short if it is long.
func quote(raw []byte) string {
	const max = 40
	if len(raw) > max {
		return string(raw[:max]) + "…"
	}
	return string(raw)
}
