package faults_test

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"testing"
	"text/tabwriter"
)

// row is one case of the fault matrix as the table prints it.
type row struct {
	rank               int
	Case               string
	Requests, Failures int
	Lost, Duplicates   int
	Target             string
	Result             string
}

// matrixFileEnv names a file that receives the table too (the Makefile's
// test target sets it).
const matrixFileEnv = "PORTICO_FAULT_MATRIX_FILE"

var matrix struct {
	mu   sync.Mutex
	rows []row
}

// record adds a case's row to the table TestMain prints.
func record(r row) {
	matrix.mu.Lock()
	defer matrix.mu.Unlock()
	matrix.rows = append(matrix.rows, r)
}

// writeMatrix writes the table to the file path.
func writeMatrix(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	printMatrix(f)
	return f.Close()
}

// printMatrix writes the table of every case run.
func printMatrix(w io.Writer) {
	matrix.mu.Lock()
	defer matrix.mu.Unlock()
	if len(matrix.rows) == 0 {
		return
	}
	fmt.Fprintln(w, "\nfault matrix:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\trequests\tfailures\tlost\tduplicates\ttarget\tresult")
	slices.SortStableFunc(matrix.rows, func(a, b row) int { return cmp.Compare(a.rank, b.rank) })
	for _, r := range matrix.rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Case, r.Requests, r.Failures, r.Lost, r.Duplicates, r.Target, r.Result)
	}
	tw.Flush()
}

// newRow starts a case's row of the matrix (rank is its place in the
// issue's list, which orders the table); it is recorded, with the
// case's result, when the test ends.
func newRow(t *testing.T, rank int, name, target string) *row {
	r := &row{rank: rank, Case: name, Target: target}
	t.Cleanup(func() {
		r.Result = "ok"
		if t.Failed() {
			r.Result = "FAIL"
		}
		record(*r)
	})
	return r
}
