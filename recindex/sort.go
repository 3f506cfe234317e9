package recindex

import "math/bits"

// Runs are sorted with an in-place MSD radix sort (American flag sort) over the entries'
// fixed-width keys — 18 bytes of id for a record, 2 of field number then 18 of parent id and
// 18 of child id for a reference — finished by insertion sort on small buckets. It needs no
// buffer beyond the run (so RunBytes still bounds the run's memory), and it is cheap where
// ids are alike: a byte that is the same in every key of a bucket (the key prefix, the pod,
// the high digits of ids allocated together) costs one counting pass and no moves. Ids are
// [0-9A-Za-z], so a varying byte splits a bucket up to 62 ways, and two or three levels leave
// buckets small enough for insertion sort. The order is the bytewise order of the keys, as
// cmpRec and cmpRef define it; the keys of records in a run are distinct, and equal
// references are identical entries, so any correct sort gives the same run.

const (
	radixInsertion = 24 // buckets this small are finished by insertion sort
	recKeyBytes    = IDLen
	refKeyBytes    = 2 + 2*IDLen
)

// recByte returns byte d of a record entry's key.
func recByte(e *recEntry, d int) byte {
	switch {
	case d < 8:
		return byte(e.hi >> (56 - 8*d))
	case d < 16:
		return byte(e.mid >> (56 - 8*(d-8)))
	case d == 16:
		return byte(e.lo >> 8)
	}
	return byte(e.lo)
}

// idByte returns byte d (0-17) of an id in integer form.
func idByte(hi, mid uint64, lo uint16, d int) byte {
	switch {
	case d < 8:
		return byte(hi >> (56 - 8*d))
	case d < 16:
		return byte(mid >> (56 - 8*(d-8)))
	case d == 16:
		return byte(lo >> 8)
	}
	return byte(lo)
}

// refByte returns byte d of a reference entry's key: field (big-endian), parent, child.
func refByte(e *refEntry, d int) byte {
	switch {
	case d == 0:
		return byte(e.field >> 8)
	case d == 1:
		return byte(e.field)
	case d < 2+IDLen:
		return idByte(e.ph, e.pm, e.pl, d-2)
	}
	return idByte(e.ch, e.cm, e.cl, d-2-IDLen)
}

func lessRec(a, b *recEntry) bool {
	if a.hi != b.hi {
		return a.hi < b.hi
	}
	if a.mid != b.mid {
		return a.mid < b.mid
	}
	return a.lo < b.lo
}

func lessRef(a, b *refEntry) bool {
	switch {
	case a.field != b.field:
		return a.field < b.field
	case a.ph != b.ph:
		return a.ph < b.ph
	case a.pm != b.pm:
		return a.pm < b.pm
	case a.pl != b.pl:
		return a.pl < b.pl
	case a.ch != b.ch:
		return a.ch < b.ch
	case a.cm != b.cm:
		return a.cm < b.cm
	}
	return a.cl < b.cl
}

// sortRecs sorts a run's record entries by id.
func sortRecs(a []recEntry) { radixRecs(a, 0) }

// sortRefs sorts a run's reference entries by field, parent, child.
func sortRefs(a []refEntry) { radixRefs(a, 0) }

// radixRecs sorts a, whose keys agree on their first d bytes.
func radixRecs(a []recEntry, d int) {
	for {
		if len(a) <= radixInsertion {
			for i := 1; i < len(a); i++ {
				for j := i; j > 0 && lessRec(&a[j], &a[j-1]); j-- {
					a[j], a[j-1] = a[j-1], a[j]
				}
			}
			return
		}
		if d == recKeyBytes {
			return // all equal
		}
		var count [256]int
		for i := range a {
			count[recByte(&a[i], d)]++
		}
		if count[recByte(&a[0], d)] == len(a) {
			// The same byte everywhere: nothing to move. Skip every byte the keys share,
			// in one pass, rather than one counting pass per byte (ids of one chunk share
			// most of their first 15 characters).
			d = max(d+1, recsAgree(a))
			continue
		}
		var next, end [256]int
		off := 0
		for b := range count {
			next[b] = off
			off += count[b]
			end[b] = off
		}
		for b := range count {
			for next[b] < end[b] {
				v := a[next[b]]
				k := recByte(&v, d)
				for int(k) != b {
					j := next[k]
					next[k]++
					a[j], v = v, a[j]
					k = recByte(&v, d)
				}
				a[next[b]] = v
				next[b]++
			}
		}
		start := 0
		for b := range count {
			if n := count[b]; n > 1 {
				radixRecs(a[start:start+n], d+1)
			}
			start += count[b]
		}
		return
	}
}

// radixRefs sorts a, whose keys agree on their first d bytes.
func radixRefs(a []refEntry, d int) {
	for {
		if len(a) <= radixInsertion {
			for i := 1; i < len(a); i++ {
				for j := i; j > 0 && lessRef(&a[j], &a[j-1]); j-- {
					a[j], a[j-1] = a[j-1], a[j]
				}
			}
			return
		}
		if d == refKeyBytes {
			return // all equal
		}
		var count [256]int
		for i := range a {
			count[refByte(&a[i], d)]++
		}
		if count[refByte(&a[0], d)] == len(a) {
			d = max(d+1, refsAgree(a)) // as in radixRecs
			continue
		}
		var next, end [256]int
		off := 0
		for b := range count {
			next[b] = off
			off += count[b]
			end[b] = off
		}
		for b := range count {
			for next[b] < end[b] {
				v := a[next[b]]
				k := refByte(&v, d)
				for int(k) != b {
					j := next[k]
					next[k]++
					a[j], v = v, a[j]
					k = refByte(&v, d)
				}
				a[next[b]] = v
				next[b]++
			}
		}
		start := 0
		for b := range count {
			if n := count[b]; n > 1 {
				radixRefs(a[start:start+n], d+1)
			}
			start += count[b]
		}
		return
	}
}

// recsAgree returns how many leading key bytes every entry of a (not empty) shares with
// a[0]: recKeyBytes if all keys are equal.
func recsAgree(a []recEntry) int {
	f := &a[0]
	var hi, mid uint64
	var lo uint16
	for i := range a {
		hi |= a[i].hi ^ f.hi
		mid |= a[i].mid ^ f.mid
		lo |= a[i].lo ^ f.lo
	}
	return idAgree(hi, mid, lo)
}

// refsAgree is recsAgree for reference keys (field, parent, child): refKeyBytes if all are
// equal.
func refsAgree(a []refEntry) int {
	f := &a[0]
	var field, pl, cl uint16
	var ph, pm, ch, cm uint64
	for i := range a {
		e := &a[i]
		field |= e.field ^ f.field
		ph |= e.ph ^ f.ph
		pm |= e.pm ^ f.pm
		pl |= e.pl ^ f.pl
		ch |= e.ch ^ f.ch
		cm |= e.cm ^ f.cm
		cl |= e.cl ^ f.cl
	}
	if field != 0 {
		return bits.LeadingZeros16(field) / 8
	}
	if n := idAgree(ph, pm, pl); n < IDLen {
		return 2 + n
	}
	return 2 + IDLen + idAgree(ch, cm, cl)
}

// idAgree returns the leading zero bytes of an id-shaped difference (hi, mid, lo as the
// integer form of an id): IDLen if it is all zero.
func idAgree(hi, mid uint64, lo uint16) int {
	switch {
	case hi != 0:
		return bits.LeadingZeros64(hi) / 8
	case mid != 0:
		return 8 + bits.LeadingZeros64(mid)/8
	case lo != 0:
		return 16 + bits.LeadingZeros16(lo)/8
	}
	return IDLen
}
