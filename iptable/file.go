package iptable

import (
	"sync"
)

// File is one ip_table.json that this process keeps current while other
// programs may write it too: P2PRC itself, when p2prc is pointed at P2PRC's
// own table. So File holds no copy: each Update reads the file afresh,
// changes it and saves it atomically, and this process's updates never
// interleave. (A write by another program between the read and the save of
// an update is lost; P2PRC rewrites its table whole in the same way.)
//
// A File is safe for concurrent use. A corrupt file makes every Update fail
// with the error Load gives, naming the file and line; it is never
// overwritten.
type File struct {
	path string
	mu   sync.Mutex
}

// Open checks that the table at path can be read and returns the File. A
// missing file is fine (it is created by the first Update that changes
// something); a corrupt one is an error, so a command refuses to start
// rather than fail later.
func Open(path string) (*File, error) {
	if _, err := Load(path); err != nil {
		return nil, err
	}
	return &File{path: path}, nil
}

// Path is the file's name.
func (f *File) Path() string { return f.path }

// Read returns the table as it is on disk now.
func (f *File) Read() (*Table, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Load(f.path)
}

// Update reads the table, lets change edit it and, if change reports that it
// changed something, saves it.
func (f *File) Update(change func(t *Table) (changed bool)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, err := Load(f.path)
	if err != nil {
		return err
	}
	if !change(t) {
		return nil
	}
	return t.Save(f.path)
}
