package iptable

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// fullEntry has every known field set, including characters that JSON
// encoders like to escape.
func fullEntry() Entry {
	return Entry{
		Name:                 "home-pc <test> & co",
		MachineUsername:      "akilan",
		IPV4:                 "203.0.113.7",
		IPV6:                 "2001:db8::7",
		Latency:              139109233 * time.Nanosecond,
		Download:             6.383175565123993,
		Upload:               896786.5894533413,
		ServerPort:           "8088",
		UDPServerPort:        "8089",
		BareMetalSSHPort:     "22",
		NAT:                  true,
		EscapeImplementation: "FRP",
		ProxyServer:          true,
		UnSafeMode:           true,
		PublicKey:            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI key@host",
		CustomInformation:    `{"gpu":"yes"} é ✓`,
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	want := &Table{Entries: []Entry{fullEntry(), RelayedEntry("node-1", "198.51.100.1", 30001), {}}}
	if err := want.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "<test> & co") {
		t.Errorf("HTML characters were escaped:\n%s", data)
	}
}

// TestWrittenTypesMatchP2PRC pins the keys, order and JSON types of
// P2PRC's p2p.IpAddress, so that P2PRC's encoding/json reads what we write.
func TestWrittenTypesMatchP2PRC(t *testing.T) {
	b, err := json.Marshal(Entry{})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"Name":"","MachineUsername":"","IPV4":"","IPV6":"","Latency":0,"Download":0,"Upload":0,` +
		`"ServerPort":"","UDPServerPort":"","BareMetalSSHPort":"","NAT":false,"EscapeImplementation":"",` +
		`"ProxyServer":false,"UnSafeMode":false,"PublicKey":"","CustomInformation":""}`
	if string(b) != want {
		t.Fatalf("zero entry:\n got %s\nwant %s", b, want)
	}
	b, err = json.Marshal(Table{})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"ip_address":[]}` {
		t.Fatalf("empty table: %s", b)
	}
}

// A table written by P2PRC, with keys from some other version or tool at the
// top level and in entries, comes back with nothing lost.
func TestUnknownKeysKept(t *testing.T) {
	const in = `{
 "ip_address": [
  {
   "Name": "pc",
   "MachineUsername": "u",
   "IPV4": "203.0.113.7",
   "IPV6": "",
   "Latency": 139109233,
   "Download": 6.383175565123993,
   "Upload": 896786.5894533413,
   "ServerPort": "8088",
   "UDPServerPort": "",
   "BareMetalSSHPort": "22",
   "NAT": false,
   "EscapeImplementation": "p2prc-relay",
   "ProxyServer": false,
   "UnSafeMode": false,
   "PublicKey": "ssh-rsa AAAA",
   "CustomInformation": "x",
   "CustomInformationKey": "c2VjcmV0",
   "Future": {"nested": [1, 2.50, "<b>", null, true], "big": 123456789012345678901234567890},
   "proxyport": "0"
  }
 ],
 "version": 3,
 "meta": {"written_by": "someone else", "empty": {}}
}`
	dir := t.TempDir()
	path := writeTable(t, dir, in)
	tab, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(func(yield func(string) bool) {
		for k := range tab.Entries[0].Extra {
			yield(k)
		}
	}); !slices.Equal(got, []string{"CustomInformationKey", "Future", "proxyport"}) {
		t.Errorf("entry Extra keys = %q", got)
	}
	out := filepath.Join(dir, "out.json")
	if err := tab.Save(out); err != nil {
		t.Fatal(err)
	}
	written, _ := os.ReadFile(out)
	if !reflect.DeepEqual(generic(t, written), generic(t, []byte(in))) {
		t.Fatalf("values changed:\n in %s\nout %s", in, written)
	}
}

// A 2021 table: lowercase keys, read into today's fields and written back
// in today's spelling only, with the key 2021 had and today lacks kept.
func Test2021Format(t *testing.T) {
	const in = `{
 "ip_address": [
  {
   "Name": "old",
   "ipv4": "145.40.90.151",
   "ipv6": "2001:db8::1",
   "latency": 139109233,
   "download": 6.383175565123993,
   "upload": 896786.5894533413,
   "serverport": "8088",
   "proxyport": "7000"
  }
 ]
}`
	dir := t.TempDir()
	tab, err := Load(writeTable(t, dir, in))
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{
		Name: "old", IPV4: "145.40.90.151", IPV6: "2001:db8::1", Latency: 139109233,
		Download: 6.383175565123993, Upload: 896786.5894533413, ServerPort: "8088",
		Extra: map[string]json.RawMessage{"proxyport": json.RawMessage(`"7000"`)},
	}
	if len(tab.Entries) != 1 || !reflect.DeepEqual(tab.Entries[0], want) {
		t.Fatalf("read %+v\nwant %+v", tab.Entries, want)
	}
	out := filepath.Join(dir, "out.json")
	if err := tab.Save(out); err != nil {
		t.Fatal(err)
	}
	written, _ := os.ReadFile(out)
	e := generic(t, written).(map[string]any)["ip_address"].([]any)[0].(map[string]any)
	for _, old := range []string{"ipv4", "ipv6", "latency", "download", "upload", "serverport"} {
		if _, ok := e[old]; ok {
			t.Errorf("2021 key %q written back", old)
		}
	}
	for k, v := range map[string]string{
		"Name": "old", "IPV4": "145.40.90.151", "IPV6": "2001:db8::1", "Latency": "139109233",
		"Download": "6.383175565123993", "Upload": "896786.5894533413", "ServerPort": "8088", "proxyport": "7000",
	} {
		if got := e[k]; got != v && got != json.Number(v) {
			t.Errorf("%s = %#v, want %s", k, got, v)
		}
	}
}

// Keys match case-insensitively and the last spelling wins, as in P2PRC's
// encoding/json; older P2PRC's string booleans and number ports are read.
func TestLenientReading(t *testing.T) {
	var e Entry
	in := `{"IPV4":"a","ipv4":"b","NAT":"True","proxyserver":"False","UnSafeMode":null,"ServerPort":8088,"Name":null}`
	if err := json.Unmarshal([]byte(in), &e); err != nil {
		t.Fatal(err)
	}
	want := Entry{IPV4: "b", NAT: true, ServerPort: "8088"}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("got %+v\nwant %+v", e, want)
	}
}

func TestCorruptFile(t *testing.T) {
	for _, tc := range []struct {
		name, content, where string
	}{
		{"syntax", "{\n \"ip_address\": [\n  {\"IPV4\": \"1.2.3.4\" \"NAT\": true}\n ]\n}", ":3:"},
		{"type", "{\n \"ip_address\": [\n  {\"IPV4\": \"1.2.3.4\",\n   \"NAT\": \"maybe\"}\n ]\n}", ":4:11:"},
		{"latency", "{\"ip_address\": [{\"Latency\": 1.5}]}", ":1:29:"},
		{"truncated", "{\n \"ip_address\": [\n  {\"IPV4\": \"1.2", ":3:"},
		{"not an object", "[]", ":1:1:"},
		{"entries not a list", `{"ip_address": {}}`, ":1:16:"},
		{"entry not an object", `{"ip_address": [1]}`, ":1:17:"},
		{"trailing data", "{}\n{}", ":2:1:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeTable(t, dir, tc.content)
			_, err := Load(path)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load = %v, want ErrCorrupt", err)
			}
			if msg := err.Error(); !strings.Contains(msg, path+tc.where) {
				t.Errorf("error %q does not name %s%s", msg, path, tc.where)
			}
			if data, _ := os.ReadFile(path); string(data) != tc.content {
				t.Errorf("file changed to %q", data)
			}
			if names := dirNames(t, dir); !slices.Equal(names, []string{FileName}) {
				t.Errorf("directory holds %q", names)
			}
		})
	}
}

func TestMissingFileIsEmpty(t *testing.T) {
	dir := t.TempDir()
	tab, err := Load(filepath.Join(dir, FileName))
	if err != nil || len(tab.Entries) != 0 || tab.Extra != nil {
		t.Fatalf("Load = %+v, %v; want an empty table", tab, err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("Load created %q", names)
	}
}

func TestBlankFileIsEmpty(t *testing.T) {
	tab, err := Load(writeTable(t, t.TempDir(), " \n\t"))
	if err != nil || len(tab.Entries) != 0 {
		t.Fatalf("Load = %+v, %v; want an empty table", tab, err)
	}
}

func TestTooLarge(t *testing.T) {
	dir := t.TempDir()
	path := writeTable(t, dir, `{"x":"`+strings.Repeat("a", MaxFileSize)+`"}`)
	if _, err := Load(path); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Load = %v, want ErrTooLarge", err)
	}
	big := &Table{Extra: map[string]json.RawMessage{"x": json.RawMessage(`"` + strings.Repeat("a", MaxFileSize) + `"`)}}
	if err := big.Save(filepath.Join(dir, "big.json")); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Save = %v, want ErrTooLarge", err)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{FileName}) {
		t.Errorf("directory holds %q", names)
	}
}

func TestSaveLeavesNoTempFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	tab := &Table{}
	for i := range 3 {
		tab.Upsert(RelayedEntry("n", "198.51.100.1", 30000+i))
		if err := tab.Save(path); err != nil {
			t.Fatal(err)
		}
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{FileName}) {
		t.Fatalf("directory holds %q", names)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}

	// The rename fails when the target is a directory: the temporary file
	// must go, and the directory stay as it was.
	blocked := filepath.Join(dir, "blocked")
	if err := os.Mkdir(blocked, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := tab.Save(blocked); err == nil {
		t.Fatal("Save over a directory succeeded")
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"blocked", FileName}) {
		t.Fatalf("after a failed save the directory holds %q", names)
	}
	if err := tab.Save(filepath.Join(dir, "missing", FileName)); err == nil {
		t.Fatal("Save into a missing directory succeeded")
	}
}

func TestSaveRejectsBadExtra(t *testing.T) {
	dir := t.TempDir()
	tab := &Table{Entries: []Entry{{IPV4: "1.2.3.4", Extra: map[string]json.RawMessage{"x": json.RawMessage(`{bad`)}}}}
	if err := tab.Save(filepath.Join(dir, FileName)); err == nil {
		t.Fatal("Save of invalid kept JSON succeeded")
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("directory holds %q", names)
	}
}

// Extra keys that name a known field would be read by P2PRC into that field,
// so they are never written; the field is.
func TestExtraCannotShadowKnownKeys(t *testing.T) {
	e := Entry{IPV4: "1.2.3.4", Extra: map[string]json.RawMessage{"ipv4": json.RawMessage(`"6.6.6.6"`)}}
	tab := Table{Entries: []Entry{e}, Extra: map[string]json.RawMessage{"IP_ADDRESS": json.RawMessage(`[]`)}}
	b, err := json.Marshal(tab)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "6.6.6.6") || strings.Contains(string(b), "IP_ADDRESS") {
		t.Fatalf("shadowing key written: %s", b)
	}
}

func TestEntriesThroughEncodingJSON(t *testing.T) {
	in := []Entry{fullEntry(), {IPV6: "2001:db8::2", Extra: map[string]json.RawMessage{"k": json.RawMessage(`[1,{"a":"<"}]`)}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out []Entry
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !sameTable(t, &Table{Entries: in}, &Table{Entries: out}) {
		t.Fatalf("got %+v\nwant %+v", out, in)
	}
	var e Entry
	err = json.Unmarshal([]byte("{\n\"NAT\": 3}"), &e)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "line 2, column 8") {
		t.Fatalf("Unmarshal error = %v", err)
	}
}
