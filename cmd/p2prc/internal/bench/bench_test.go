package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := []byte("4242 (p2prc (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 100 0 0")
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3250 * time.Millisecond; got != want {
		t.Errorf("CPU = %v, want %v (utime 250 + stime 75 ticks)", got, want)
	}
	if _, err := parseStatCPU([]byte("4242 (p2prc) S 1")); err == nil {
		t.Error("a short stat line was accepted")
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tp2prc\nVmPeak:\t  900000 kB\nVmRSS:\t   12345 kB\nThreads:\t7\n"
	got, err := parseVmRSS(strings.NewReader(status))
	if err != nil || got != 12345<<10 {
		t.Errorf("VmRSS = %d, %v; want %d", got, err, 12345<<10)
	}
	if _, err := parseVmRSS(strings.NewReader("Name:\tx\n")); err == nil {
		t.Error("a status without VmRSS was accepted")
	}
}

func TestQuantile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		if got := quantile(lat, tt.q); got != tt.want {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if quantile(nil, 0.5) != 0 {
		t.Error("the quantile of nothing is not 0")
	}
}

func TestSelectWorkloads(t *testing.T) {
	ws, err := selectWorkloads([]string{"rr", "tcp-1"})
	if err != nil || len(ws) != 2 || ws[0].name != "tcp-1" || ws[1].name != "rr" {
		t.Fatalf("selectWorkloads(rr, tcp-1) = %v, %v; want tcp-1 then rr, in table order", ws, err)
	}
	if _, err := selectWorkloads([]string{"tcp-2"}); err == nil || !strings.Contains(err.Error(), "tcp-1,tcp-8") {
		t.Errorf("an unknown workload gave %v, want an error listing the known ones", err)
	}
	if _, err := SelectModes([]string{"nope"}); err == nil {
		t.Error("an unknown mode was accepted")
	}
}

// The table sets each relayed figure beside the direct one with their
// ratio, or the difference in points for percentages; JSON carries the same.
func TestReportTableAndJSON(t *testing.T) {
	cfg := Config{Duration: time.Second, Concurrency: 32, OpenConns: 1000, Modes: []Mode{{Name: "plain"}}}
	tcp := workloads[0]
	udp := workload{name: "udp-1g", title: "UDP"}
	r := newReport(cfg, nil)
	r.add(tcp, "direct", result{figures: []figure{{metric: "Gbit/s", value: 10}}})
	r.add(tcp, "plain", result{figures: []figure{{metric: "Gbit/s", value: 4.5}, {metric: "relay CPU s/GB", value: 0.5, compare: noCompare}}})
	r.add(udp, "direct", result{figures: []figure{{metric: "loss %", value: 1, compare: byPoints}}})
	r.add(udp, "plain", result{figures: []figure{{metric: "loss %", value: 1.5, compare: byPoints}}, note: "something to know"})
	r.finish()

	var out bytes.Buffer
	if err := r.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	for _, want := range []string{"TCP bulk, 1 stream", "Gbit/s", "10.00", "4.500", "0.45", "relay CPU s/GB", "+0.5 pt", "note: udp-1g via plain: something to know"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}

	out.Reset()
	if err := r.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Rows) != 3 || back.Rows[0].Ratio["plain"] != 0.45 || back.Rows[1].Direct != nil || back.Rows[2].Points["plain"] != 0.5 {
		t.Errorf("JSON rows: %+v", back.Rows)
	}
}

// Each load generator measures something real against the bench's own
// services on the direct path: a user would see zeros otherwise.
func TestWorkloadsDirect(t *testing.T) {
	svc, err := startLocalServices()
	if err != nil {
		t.Fatal(err)
	}
	defer svc.close()
	b := &bench{cfg: Config{Duration: 200 * time.Millisecond, Concurrency: 4}, svc: svc}
	p := &path{name: "direct", addrs: svc.addrs()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, w := range workloads {
		if w.relayed {
			continue
		}
		t.Run(w.name, func(t *testing.T) {
			res, err := w.run(ctx, b, p)
			if err != nil {
				t.Fatal(err)
			}
			first := res.figures[0]
			if first.value <= 0 {
				t.Errorf("%s = %v, want more than 0", first.metric, first.value)
			}
			if w.perOp != "" && res.ops <= 0 {
				t.Errorf("moved %v %s, want more than 0", res.ops, w.perOp)
			}
			for _, f := range res.figures {
				if f.metric == "loss %" && f.value > 50 {
					t.Errorf("lost %.1f %% of datagrams on loopback", f.value)
				}
			}
		})
	}
}

// The UDP generator offers what it says: a datagram count that matches
// the rate, and a loss figure computed from what the sink counted.
func TestUDPLoadCountsWhatArrives(t *testing.T) {
	svc, err := startLocalServices()
	if err != nil {
		t.Fatal(err)
	}
	defer svc.close()
	b := &bench{cfg: Config{Duration: 300 * time.Millisecond}, svc: svc}
	p := &path{name: "direct", addrs: svc.addrs()}
	res, err := udpLoad(10e6)(context.Background(), b, p) // 10 Mbit/s: ~268 datagrams
	if err != nil {
		t.Fatal(err)
	}
	got, _ := svc.udp.counts()
	want := int64(3_000_000 / (udpDatagram * 8))
	if got > want || got < want*9/10 {
		t.Errorf("the sink counted %d datagrams, want about %d", got, want)
	}
	if delivered := res.figures[0].value; delivered < 0.009 || delivered > 0.011 {
		t.Errorf("delivered %.4f Gbit/s at 10 Mbit/s offered", delivered)
	}
}

// Over several rounds each figure is the median, and the ratio the median
// of each round's ratio, so one disturbed round does not move the result.
func TestReportMedianOfRounds(t *testing.T) {
	cfg := Config{Duration: time.Second, Rounds: 3, Modes: []Mode{{Name: "plain"}}}
	tcp := workloads[0]
	r := newReport(cfg, nil)
	for _, rd := range []struct{ direct, relay float64 }{{10, 4}, {20, 9}, {2, 1.9}} { // the last round disturbed
		r.add(tcp, "direct", result{figures: []figure{{metric: "Gbit/s", value: rd.direct}}})
		r.add(tcp, "plain", result{figures: []figure{{metric: "Gbit/s", value: rd.relay}}})
	}
	r.finish()
	row := r.Rows[0]
	if *row.Direct != 10 || row.Relay["plain"] != 4 || row.Ratio["plain"] != 0.45 {
		t.Errorf("direct %v, relay %v, ratio %v; want the medians 10, 4 and 0.45", *row.Direct, row.Relay["plain"], row.Ratio["plain"])
	}
	if median([]float64{3, 1, 2, 10}) != 2.5 {
		t.Error("the median of an even number of values is not the mean of the middle two")
	}
}

// Each mode is measured with each GOMAXPROCS setting, as its own column.
func TestVariants(t *testing.T) {
	c := Config{Modes: []Mode{{Name: "tls"}, {Name: "plain"}}, GOMAXPROCS: []int{0, 1}}
	var names []string
	for _, v := range c.variants() {
		names = append(names, v.name)
	}
	if got := strings.Join(names, " "); got != "tls tls,gomaxprocs=1 plain plain,gomaxprocs=1" {
		t.Errorf("variants %q", got)
	}
	if f := fileName("plain,gomaxprocs=1"); f != "plain-gomaxprocs1" {
		t.Errorf("file name %q", f)
	}
}

func TestLinesWaitAndTail(t *testing.T) {
	l := newLines()
	c := &child{name: "node", stdout: l, stderr: l, done: make(chan struct{})}
	go func() {
		l.Write([]byte("starting\ntcp 127.0.0.1:1 -> 127.0"))
		l.Write([]byte(".0.1:2\n"))
	}()
	line, err := c.waitLine(context.Background(), l, func(s string) bool { return strings.HasPrefix(s, "tcp ") }, 5*time.Second, "say tcp")
	if err != nil || line != "tcp 127.0.0.1:1 -> 127.0.0.1:2" {
		t.Fatalf("waitLine = %q, %v", line, err)
	}
	_, err = c.waitLine(context.Background(), l, func(string) bool { return false }, 50*time.Millisecond, "say more")
	if err == nil || !strings.Contains(err.Error(), "did not say more within") || !strings.Contains(err.Error(), "  starting") {
		t.Errorf("a timeout gave %v, want an error quoting the output", err)
	}
}

// runHelper runs serve as a helper process would, returns what it
// announced, and at the test's end stops it and checks it ended cleanly.
func runHelper(t *testing.T, serve func(context.Context, io.Writer) error) map[string]string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, w) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("the helper ended with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the helper did not end when its context did")
		}
	})
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseListening(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The services process says where its services listen, serves them, and
// ends when told to.
func TestServeServices(t *testing.T) {
	addrs, err := servicesNamed(runHelper(t, ServeServices))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addrs[svcEcho])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := []byte("a request")
	c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
		t.Errorf("the echo service answered %q, %v", got, err)
	}
	if _, err := servicesNamed(map[string]string{"echo": "127.0.0.1:1"}); err == nil || !strings.Contains(err.Error(), "discard") {
		t.Errorf("a line without every service: %v", err)
	}
}

// A forwarder carries a connection to its target both ways, passes a
// half-close on so the reply still comes back, and ends when told to.
func TestServeForwarder(t *testing.T) {
	svc, err := startLocalServices()
	if err != nil {
		t.Fatal(err)
	}
	defer svc.close()
	target := svc.tcp[svcDiscard]
	addrs := runHelper(t, func(ctx context.Context, w io.Writer) error { return ServeForwarder(ctx, []string{target}, w) })
	if addrs[target] == "" {
		t.Fatalf("the forwarder announced %v, no address for %s", addrs, target)
	}
	c, err := net.Dial("tcp", addrs[target])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(make([]byte, 100_000))
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, err := io.ReadAll(c)
	if err != nil || len(reply) != 8 || binary.BigEndian.Uint64(reply) != 100_000 {
		t.Errorf("the discard service, through the forwarder, answered %x, %v; want the byte count 100000", reply, err)
	}
	if err := ServeForwarder(context.Background(), nil, io.Discard); err == nil {
		t.Error("a forwarder with nothing to forward to started")
	}
}
