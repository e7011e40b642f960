package faults_test

import (
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
)

// row is one case of the fault matrix as the table prints it.
type row struct {
	Case               string
	Requests, Failures int
	Lost, Duplicates   int
	Target             string
	Result             string
}

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
	for _, r := range matrix.rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Case, r.Requests, r.Failures, r.Lost, r.Duplicates, r.Target, r.Result)
	}
	tw.Flush()
}
