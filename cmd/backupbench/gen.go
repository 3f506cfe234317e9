package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

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

// Key prefixes of the plan dataset's children.
const (
	contactPrefix = "003"
	casePrefix    = "500"
)

// planDataset is the PlanRestore dataset: accounts Accounts (csvgen, seed planSeed), per account
// contactsPer Contacts (AccountId → Account), per contact casesPer Cases (ContactId → Contact).
type planDataset struct {
	accounts, contactsPer, casesPer int
	accountCSV, contactCSV, caseCSV string
	accountIDs                      []string
}

const planSeed = 7

func (p *planDataset) records() int {
	return p.accounts * (1 + p.contactsPer + p.contactsPer*p.casesPer)
}

// generate writes the three CSVs into dir.
func (p *planDataset) generate(dir string) error {
	p.accountCSV = filepath.Join(dir, "plan-account.csv")
	p.contactCSV = filepath.Join(dir, "plan-contact.csv")
	p.caseCSV = filepath.Join(dir, "plan-case.csv")
	if _, err := writeCSV(p.accountCSV, p.accounts, planSeed); err != nil {
		return err
	}
	first := int64(planSeed) * 1_000_000 // as csvgen numbers a seed's rows
	p.accountIDs = make([]string, p.accounts)
	for i := range p.accountIDs {
		p.accountIDs[i] = csvgen.ID(csvgen.AccountPrefix, first+int64(i))
	}
	r := rand.New(rand.NewPCG(planSeed, 1))
	desc := func() string {
		words := []string{"renewal", "escalation", "onboarding", "billing", "café", "résumé", "priority", "migration", "review", "日本"}
		n := 3 + r.IntN(12)
		s := words[r.IntN(len(words))]
		for range n {
			s += " " + words[r.IntN(len(words))]
		}
		if r.IntN(5) == 0 {
			s += ",\n\"quoted\" follow-up"
		}
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	write := func(path, header string, rows func(w *bufio.Writer)) error {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		w.WriteString(header)
		rows(w)
		if err := w.Flush(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	err := write(p.contactCSV, "Id,AccountId,FirstName,LastName,Email,Phone,Title,Description,CreatedDate\n", func(w *bufio.Writer) {
		for a, acc := range p.accountIDs {
			for j := range p.contactsPer {
				n := int64(a*p.contactsPer + j)
				fmt.Fprintf(w, "%s,%s,\"First%d\",\"Last%d\",\"contact%d@example.com\",\"(555) %03d-%04d\",\"Manager\",%s,2024-0%d-1%dT10:00:00.000Z\n",
					csvgen.ID(contactPrefix, n), acc, n, n, n, r.IntN(1000), r.IntN(10000), desc(), 1+r.IntN(9), r.IntN(10))
			}
		}
	})
	if err != nil {
		return err
	}
	return write(p.caseCSV, "Id,ContactId,Subject,Status,Priority,Origin,Description,CreatedDate\n", func(w *bufio.Writer) {
		for c := range p.accounts * p.contactsPer {
			contact := csvgen.ID(contactPrefix, int64(c))
			for j := range p.casesPer {
				n := int64(c*p.casesPer + j)
				fmt.Fprintf(w, "%s,%s,\"Case %d: cannot log in\",\"%s\",\"%s\",\"Web\",%s,2025-0%d-1%dT08:30:00.000Z\n",
					csvgen.ID(casePrefix, n), contact, n, []string{"New", "Working", "Closed"}[r.IntN(3)],
					[]string{"Low", "Medium", "High"}[r.IntN(3)], desc(), 1+r.IntN(9), r.IntN(10))
			}
		}
	})
}
