package compose

import (
	"fmt"
	"strings"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int    // where it starts, 1-based
	cmd  string // upper-cased: FROM, COPY, RUN, ...
	args string
}

// stage is one FROM and the instructions up to the next.
type stage struct {
	base   string // image or earlier stage
	name   string // AS name; empty if unnamed
	line   int
	instrs []instruction
}

type dockerfile struct{ stages []stage }

// parseDockerfile reads the instructions this repository's Dockerfile uses:
// comments, blank lines, backslash continuations. Heredocs and parser
// directives other than comments are not supported, and not used.
func parseDockerfile(text string) (dockerfile, error) {
	var df dockerfile
	var pending strings.Builder
	start := 0
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if pending.Len() == 0 {
			start = i + 1
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(line)
		full := pending.String()
		pending.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			fields := strings.Fields(in.args)
			s := stage{line: in.line}
			switch {
			case len(fields) == 1:
				s.base = fields[0]
			case len(fields) == 3 && strings.EqualFold(fields[1], "AS"):
				s.base, s.name = fields[0], fields[2]
			default:
				return df, fmt.Errorf("line %d: FROM %s: want FROM image [AS name]", in.line, in.args)
			}
			df.stages = append(df.stages, s)
			continue
		}
		if len(df.stages) == 0 {
			if in.cmd == "ARG" {
				continue // an ARG before the first FROM
			}
			return df, fmt.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		}
		last := &df.stages[len(df.stages)-1]
		last.instrs = append(last.instrs, in)
	}
	if pending.Len() > 0 {
		return df, fmt.Errorf("line %d: continuation at the end of the file", start)
	}
	if len(df.stages) == 0 {
		return df, fmt.Errorf("no FROM")
	}
	return df, nil
}

// stageNamed returns the stage called name, or nil.
func (df dockerfile) stageNamed(name string) *stage {
	for i := range df.stages {
		if df.stages[i].name == name {
			return &df.stages[i]
		}
	}
	return nil
}

// copySpec is a COPY or ADD: its --from (empty for the build context) and
// its sources.
type copySpec struct {
	line    int
	from    string
	sources []string
}

func (df dockerfile) copies() []copySpec {
	var out []copySpec
	for _, s := range df.stages {
		for _, in := range s.instrs {
			if in.cmd != "COPY" && in.cmd != "ADD" {
				continue
			}
			c := copySpec{line: in.line}
			var paths []string
			for _, f := range strings.Fields(in.args) {
				if v, ok := strings.CutPrefix(f, "--from="); ok {
					c.from = v
				} else if !strings.HasPrefix(f, "--") {
					paths = append(paths, f)
				}
			}
			if len(paths) >= 2 {
				c.sources = paths[:len(paths)-1]
			}
			out = append(out, c)
		}
	}
	return out
}

// pinnedImage says whether ref names an image by an exact version: a tag
// with a digit in it, not "latest" (a digest pins it too).
func pinnedImage(ref string) bool {
	if strings.Contains(ref, "@sha256:") {
		return true
	}
	slash := strings.LastIndex(ref, "/")
	_, tag, ok := strings.Cut(ref[slash+1:], ":")
	return ok && tag != "latest" && strings.ContainsAny(tag, "0123456789")
}
