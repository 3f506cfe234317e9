package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// isTerminal reports whether w is a character device (a terminal), where
// progress is drawn as a bar redrawn in place rather than printed as lines.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressRedraw is how often the bar is redrawn at most.
const progressRedraw = 100 * time.Millisecond

// progress reports a run's uploads on stderr: on a terminal, one bar redrawn
// in place (bytes done of total, rate, ETA, uploads); elsewhere, a plain line
// per finished upload. It is safe for concurrent use.
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time
	total int64 // bytes of every upload of the backup
	base  int64 // bytes committed before this run
	done  atomic.Int64

	mu       sync.Mutex
	uploads  int    // to do in this run
	noun     string // what uploads are called in the bar: "uploads", "downloads"
	finished int
	shown    bool // a bar is on the screen
	stop     chan struct{}
	stopped  chan struct{}
}

// newProgress starts the report of a run: total bytes, of which base are
// done already, in transfers called noun in the bar ("uploads", "downloads").
func newProgress(w io.Writer, tty bool, total, base int64, uploads int, noun string) *progress {
	p := &progress{w: w, tty: tty, start: time.Now(), total: total, base: base, uploads: uploads, noun: noun}
	p.done.Store(base)
	if tty {
		p.stop, p.stopped = make(chan struct{}), make(chan struct{})
		go p.loop()
	}
	return p
}

func (p *progress) loop() {
	defer close(p.stopped)
	t := time.NewTicker(progressRedraw)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.draw()
			p.mu.Unlock()
		}
	}
}

// add counts bytes done (negative when a transfer starts over).
func (p *progress) add(delta int64) { p.done.Add(delta) }

// completed records a finished transfer; line describes it for the plain
// form.
func (p *progress) completed(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finished++
	if !p.tty {
		fmt.Fprintln(p.w, line)
	}
}

// printf prints a message line, above the bar on a terminal.
func (p *progress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
	fmt.Fprintf(p.w, format, args...)
	if p.tty {
		p.draw()
	}
}

// close stops redrawing and leaves the last bar on its own line.
func (p *progress) close() {
	if !p.tty {
		return
	}
	close(p.stop)
	<-p.stopped
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw()
	if p.shown {
		fmt.Fprintln(p.w)
		p.shown = false
	}
}

// draw redraws the bar; p.mu is held.
func (p *progress) draw() {
	fmt.Fprint(p.w, "\r"+p.line(time.Now())+"\x1b[K")
	p.shown = true
}

// line is the bar's text:
// [#########-----------]  45%  1.2 GiB / 2.7 GiB  35.2 MiB/s  ETA 45s  12/40 uploads
func (p *progress) line(now time.Time) string {
	done := p.done.Load()
	const width = 20
	frac := 1.0
	if p.total > 0 {
		frac = min(max(float64(done)/float64(p.total), 0), 1)
	}
	filled := int(frac * width)
	bar := "[" + strings.Repeat("#", filled) + strings.Repeat("-", width-filled) + "]"
	elapsed := now.Sub(p.start)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done-p.base) / elapsed.Seconds()
	}
	eta := "-"
	if rate > 0 && done < p.total {
		eta = shortDuration(time.Duration(float64(p.total-done) / rate * float64(time.Second)))
	} else if done >= p.total {
		eta = "0s"
	}
	return fmt.Sprintf("%s %3d%%  %s / %s  %s/s  ETA %s  %d/%d %s",
		bar, int(frac*100), humanBytes(done), humanBytes(p.total), humanBytes(int64(rate)), eta, p.finished, p.uploads, p.noun)
}
