package httpcache

import (
	"net/http"
	"strings"
)

// notModified evaluates a GET's If-None-Match, or else If-Modified-Since,
// against a stored or fetched 200 (RFC 9110 section 13.2.2). Entity tags
// compare weakly, as If-None-Match requires.
func notModified(req, resp http.Header) bool {
	if inm := req.Get("If-None-Match"); inm != "" {
		etag := resp.Get("ETag")
		if etag == "" {
			return false
		}
		if strings.TrimSpace(inm) == "*" {
			return true
		}
		for tag := range strings.SplitSeq(inm, ",") {
			if weakEqual(strings.TrimSpace(tag), etag) {
				return true
			}
		}
		return false
	}
	ims, lm := req.Get("If-Modified-Since"), resp.Get("Last-Modified")
	if ims == "" || lm == "" {
		return false
	}
	since, err := http.ParseTime(ims)
	if err != nil {
		return false
	}
	modified, err := http.ParseTime(lm)
	return err == nil && !modified.After(since)
}

func weakEqual(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}
