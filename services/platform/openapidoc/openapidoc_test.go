package openapidoc_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/portico-mesh/portico/services/platform/openapidoc"
)

const valid = `openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /things:
    get:
      responses:
        "200": {description: ok}
`

func TestLoadAndJSON(t *testing.T) {
	doc, err := openapidoc.Load([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if doc.Paths.Find("/things") == nil {
		t.Fatal("path /things not loaded")
	}
	out, err := openapidoc.JSON([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(out, &back); err != nil || back["openapi"] != "3.0.3" {
		t.Fatalf("JSON form: %s (%v)", out, err)
	}
}

func TestInvalidDocumentsAreRefused(t *testing.T) {
	for name, data := range map[string]string{
		"not YAML":         "{",
		"no info":          "openapi: 3.0.3\npaths: {}\n",
		"response no desc": strings.Replace(valid, "{description: ok}", "{}", 1),
	} {
		if _, err := openapidoc.Load([]byte(data)); err == nil {
			t.Errorf("%s: loaded", name)
		}
		if _, err := openapidoc.JSON([]byte(data)); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}
