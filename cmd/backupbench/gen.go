package main

import (
	"fmt"
	"io"
	"os"

	"backupstore/csvscan/csvgen"
)

// countWriter counts and discards.
type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// genCSV writes a csvgen CSV of at least target bytes to path, streaming (nothing is held in
// memory), and returns its size and row count. Seeds give disjoint id ranges when they differ by
// more than the rows / 1,000,000 (csvgen starts a seed's ids at seed × 1,000,000).
func genCSV(path string, target, seed int64) (size int64, rows int, err error) {
	// csvgen takes a row count: estimate it from the average row of the first 20,000 rows
	// (the same seed gives the same rows), with a small margin.
	var cw countWriter
	const sample = 20000
	if err := csvgen.Generate(&cw, sample, seed); err != nil {
		return 0, 0, err
	}
	var hw countWriter
	if err := csvgen.Generate(&hw, 0, seed); err != nil {
		return 0, 0, err
	}
	avg := float64(cw.n-hw.n) / sample
	rows = int(float64(target-hw.n)/avg*1.003) + 1
	for attempt := 0; ; attempt++ {
		size, err = writeCSV(path, rows, seed)
		if err != nil {
			return 0, 0, err
		}
		if size >= target || attempt == 2 {
			break
		}
		rows = int(float64(rows)*float64(target)/float64(size)*1.002) + 1
	}
	if size < target {
		return 0, 0, fmt.Errorf("csvgen: %s has %d bytes, wanted at least %d", path, size, target)
	}
	return size, rows, nil
}

func writeCSV(path string, rows int, seed int64) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	cw := &countWriter{}
	if err := csvgen.Generate(io.MultiWriter(f, cw), rows, seed); err != nil {
		f.Close()
		os.Remove(path)
		return 0, err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return 0, err
	}
	return cw.n, nil
}

// warm reads path once, so every measured upload reads it from the page cache.
func warm(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}
