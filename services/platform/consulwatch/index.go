package consulwatch

// step is what to do with a query's answer.
type step struct {
	waitIndex uint64 // the WaitIndex of the next query
	deliver   bool   // the answer is news
	reset     bool   // the index went backwards or was 0
}

// nextIndex applies Consul's rules for the index of the next blocking
// query, given the index waited on (prev), the answer's index (last) and
// whether any answer was delivered yet. It is pure, so the whole
// discipline is one table test.
//
//   - An unchanged index means the wait timed out with nothing new
//     (consul-template's view: "index was the same").
//   - An index that went backwards (a restored snapshot, a new leader with
//     an older state, a recreated key) or that is 0 (which should not
//     happen, but then the query would never block) resets the wait to 0.
//     Unlike consul-template, which drops that answer, it is delivered: it
//     is current data, and a consumer that compares content drops it if
//     nothing really changed.
//   - Otherwise wait on the new index.
func nextIndex(prev, last uint64, delivered bool) step {
	switch {
	case last == 0 || last < prev:
		return step{waitIndex: 0, deliver: true, reset: true}
	case delivered && last == prev:
		return step{waitIndex: prev}
	default:
		return step{waitIndex: last, deliver: true}
	}
}
