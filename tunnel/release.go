package tunnel

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/p2prc/p2prc/mux"
)

// PublicPort names a public port on a relay, as in `--release tcp:30022`.
type PublicPort struct {
	Network string // "tcp" or "udp"
	Port    int
}

func (p PublicPort) String() string { return p.Network + ":" + strconv.Itoa(p.Port) }

// ParsePublicPort parses a --release value: tcp:PORT or udp:PORT.
func ParsePublicPort(s string) (PublicPort, error) {
	network, port, ok := strings.Cut(s, ":")
	network = strings.ToLower(network)
	if !ok || (network != "tcp" && network != "udp") {
		return PublicPort{}, fmt.Errorf("--release %q: the form is tcp:PORT or udp:PORT, the public port on the relay", s)
	}
	p, err := parsePort(port)
	if err != nil {
		return PublicPort{}, fmt.Errorf("--release %q: %v", s, err)
	}
	return PublicPort{Network: network, Port: p}, nil
}

// answerRelease drops one of the node's own mappings, or says why not.
func (s *relaySession) answerRelease(req *mux.Release) {
	if refused := s.r.release(s, req); refused != nil {
		refused.ID = req.ID
		s.log.Info("refused a release", "type", req.Network, "port", req.Port, "code", refused.Code, "why", refused.Text)
		s.ctrl.Send(refused)
		return
	}
	s.log.Info("released", "type", req.Network, "port", req.Port)
	s.ctrl.Send(&mux.Release{ID: req.ID, Network: req.Network, Port: req.Port})
}

// release removes the mapping req names if s's node owns it, and closes
// its port. Only the owner may: another node's port is refused with owned.
func (r *Relay) release(s *relaySession, req *mux.Release) *mux.Error {
	network := strings.ToLower(req.Network)
	if network != "tcp" && network != "udp" || req.Port < 1 || req.Port > 65535 {
		return &mux.Error{Code: mux.CodeBadRequest, Text: fmt.Sprintf("release of %s port %d: name a tcp or udp port in 1-65535", req.Network, req.Port)}
	}
	key := portKey{network, req.Port}
	r.mu.Lock()
	defer r.mu.Unlock()
	// A query session (`p2prc node --release` beside a running node) may
	// release too: what counts is the identity.
	if !s.peer.Query && r.sessions[s.peer.ID] != s {
		return &mux.Error{Code: mux.CodeReplaced, Text: "this session was replaced by a newer one of the same node"}
	}
	m, ok := r.maps.Lookup(network, req.Port)
	switch {
	case !ok:
		return &mux.Error{Code: mux.CodeBadRequest, Text: fmt.Sprintf("no mapping holds port %v on this relay; nothing to release", key)}
	case m.Owner != s.peer.ID:
		return &mux.Error{Code: mux.CodeOwned, Text: fmt.Sprintf("port %v is owned by another node; a node can release only its own mappings", key)}
	}
	if err := r.maps.Remove(network, req.Port); err != nil {
		r.log.Error("removing a released mapping", "port", key, "err", err)
		return &mux.Error{Code: mux.CodeInternal, Text: "the relay could not record the release; try again later"}
	}
	r.traffic.forget(key)
	if pp := r.ports[key]; pp != nil {
		pp.close()
		delete(r.ports, key)
		if holder := pp.session.Swap(nil); holder != nil { // this session, or the node's running one
			holder.ports = slices.DeleteFunc(holder.ports, func(held *publicPort) bool { return held == pp })
		}
	}
	return nil
}

// releaseAll gives up each of the node's --release ports; a refusal ends
// the session with it.
func (s *nodeSession) releaseAll() error {
	for _, p := range s.n.cfg.Release {
		if err := s.release(p); err != nil {
			return fmt.Errorf("--release %v: %w", p, err)
		}
		s.log.Info("released", "port", p.String())
	}
	return nil
}

// release asks the relay to drop the mapping on p and forgets it.
func (s *nodeSession) release(p PublicPort) error {
	m, err := s.request(func(id uint32) mux.Message {
		return &mux.Release{ID: id, Network: p.Network, Port: p.Port}
	})
	if err != nil {
		return err
	}
	switch m := m.(type) {
	case *mux.Error:
		return m
	case *mux.Release:
		s.mu.Lock()
		delete(s.mappings, portKey{p.Network, p.Port})
		s.mu.Unlock()
		if s.n.cfg.Mappings != nil {
			if err := s.n.cfg.Mappings.Remove(p.Network, p.Port); err != nil {
				s.log.Error("writing this node's mapping file", "err", err)
			}
		}
		return nil
	}
	return fmt.Errorf("%w: %v in reply to a release", mux.ErrUnexpected, m.Type())
}

// request sends the message build makes for a fresh request ID and waits
// for the relay's answer to that ID.
func (s *nodeSession) request(build func(id uint32) mux.Message) (mux.Message, error) {
	reply := make(chan mux.Message, 1)
	s.mu.Lock()
	s.nextID++
	id := s.nextID
	s.pending[id] = reply
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}()
	if err := s.ctrl.Send(build(id)); err != nil {
		return nil, err
	}
	select {
	case m := <-reply:
		return m, nil
	case <-s.done:
		return nil, errors.New("session ended while waiting for the relay's answer")
	case <-time.After(s.n.cfg.PeerTimeout):
		return nil, errors.New("the relay did not answer in time")
	}
}
