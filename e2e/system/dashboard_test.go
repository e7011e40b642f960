package system_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser starts headless Chromium (installed by make deps; CHROMIUM names
// another binary) and returns a tab's context and a function that lists
// what went wrong on the page so far: uncaught exceptions and security
// (Content Security Policy) errors.
func browser(t *testing.T, timeout time.Duration) (context.Context, func() []string) {
	t.Helper()
	name := os.Getenv("CHROMIUM")
	if name == "" {
		name = "chromium"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: run `make deps` (it installs Debian's chromium): %v", name, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()),
		// Keep Chromium from calling out of this closed network.
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
	)
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(allocCtx)

	var (
		mu       sync.Mutex
		problems []string
		wg       sync.WaitGroup
	)
	messages := chromedp.Console(tab)
	wg.Go(func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Source == "security" {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	})
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancel()
		wg.Wait()
	})
	return tab, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}

// TestDashboardInChromium drives the web dashboard through the ingress in
// a real browser: register, sign in, list and add products (a name full of
// markup stays text), edit one (and be refused with 412 when someone else
// changed it meanwhile), see the edge cache answer in the request log, list
// users, and, signed out, see the ingress's 401 problem.
func TestDashboardInChromium(t *testing.T) {
	tab, pageProblems := browser(t, 2*time.Minute)
	suffix := randomHex(4)
	username := "dashboard-" + suffix
	email := username + "@example.com"
	password := "password-" + randomHex(8)
	// The page must render this as text: were it parsed as HTML, an
	// element with id "injected" would appear.
	productName := `<img src=x id=injected> Lamp ` + suffix

	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tab, actions...); err != nil {
			t.Fatalf("%s: %v\nmessage on the page: %s\nproblems on the page: %v\nrequest log:\n%s", what, err, pageMessage(tab), pageProblems(), requestLog(tab))
		}
	}
	// waitFor polls a JavaScript condition on the page.
	waitFor := func(expression string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](expression, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))
	}
	logHas := func(method, path string, status int) string {
		return fmt.Sprintf(`[...document.querySelectorAll("#request-log tbody tr")].some(r => r.dataset.method === %q && r.cells[2].textContent.startsWith(%q) && r.dataset.status === "%d")`, method, path, status)
	}

	step("open the dashboard",
		chromedp.Navigate(sys.ingressURL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#register-form")),
	)
	step("register",
		chromedp.SendKeys(chromedp.CSS(`#register-form input[name=username]`), username),
		chromedp.SendKeys(chromedp.CSS(`#register-form input[name=email]`), email),
		chromedp.SendKeys(chromedp.CSS(`#register-form input[name=password]`), password),
		chromedp.Click(chromedp.CSS(`#register-form button[type=submit]`)),
		waitFor(logHas(http.MethodPost, "/api/users/users", http.StatusCreated)),
	)
	step("sign in",
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name=email]`), email),
		chromedp.SendKeys(chromedp.CSS(`#login-form input[name=password]`), password),
		chromedp.Click(chromedp.CSS(`#login-form button[type=submit]`)),
		waitFor(fmt.Sprintf(`document.getElementById("whoami").textContent.includes(%q)`, username)),
		// Signing in lists the products, with the token.
		waitFor(logHas(http.MethodGet, "/api/products/products", http.StatusOK)),
	)
	step("add a product",
		chromedp.SendKeys(chromedp.CSS(`#product-form input[name=name]`), productName),
		chromedp.SendKeys(chromedp.CSS(`#product-form input[name=description]`), "added from the dashboard"),
		chromedp.SendKeys(chromedp.CSS(`#product-form input[name=price]`), "12.50"),
		chromedp.Click(chromedp.CSS(`#product-form button[type=submit]`)),
		waitFor(logHas(http.MethodPost, "/api/products/products", http.StatusCreated)),
	)
	// The search narrows the list to the new product, shown as text.
	step("find the product",
		chromedp.SendKeys(chromedp.CSS(`#product-filter input[name=name]`), "Lamp "+suffix),
		chromedp.Click(chromedp.CSS(`#product-filter button[type=submit]`)),
		waitFor(logHas(http.MethodGet, "/api/products/products?limit=20&name=", http.StatusOK)),
		waitFor(fmt.Sprintf(`[...document.querySelectorAll("#product-table tbody tr")].some(r => r.cells[0].textContent === %q && r.cells[2].textContent === "12.5")`, productName)),
	)
	injected, err := chromedp.Run(tab, chromedp.Evaluate[bool](`document.getElementById("injected") !== null`))
	if err != nil {
		t.Fatal(err)
	}
	if injected {
		t.Fatal("a product name was rendered as HTML")
	}

	// Editing reads the product's ETag and saves with If-Match.
	row := fmt.Sprintf(`[...document.querySelectorAll("#product-table tbody tr")].find(r => r.cells[0].textContent === %q)`, productName)
	editRow := func(stock string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Evaluate[chromedp.Void](row+`.querySelector("button").click()`),
			waitFor(row+`?.querySelector("input[name=stock_quantity]") != null`),
			chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`%s.querySelector("input[name=stock_quantity]").value = %q`, row, stock)),
		)
	}
	save := chromedp.Evaluate[chromedp.Void](row + `.querySelector("button:not(.quiet)").click()`)
	step("edit the product",
		editRow("7"), save,
		waitFor(logHas(http.MethodPut, "/api/products/products/", http.StatusOK)),
		waitFor(row+`?.cells[3].textContent === "7"`),
	)
	// Someone else changes the product while the form is open: saving is
	// refused with 412, and the list then shows their version.
	id, err := chromedp.Run(tab, chromedp.Evaluate[string](row+`.dataset.id`))
	if err != nil {
		t.Fatal(err)
	}
	step("open the form again", editRow("9"))
	expect(t, http.StatusOK, request{method: http.MethodPut, path: "/api/products/products/" + id, token: sys.alice.Token, body: `{"stock_quantity": 3}`})
	step("save a stale form",
		save,
		waitFor(logHas(http.MethodPut, "/api/products/products/", http.StatusPreconditionFailed)),
		waitFor(`document.getElementById("message").classList.contains("error") && document.getElementById("message").textContent.includes("changed by someone else")`),
		waitFor(row+`?.cells[3].textContent === "3"`),
	)

	// The same search again is answered by the edge's cache once the
	// purge that followed the creation has passed: the log shows X-Cache.
	hit := `[...document.querySelectorAll("#request-log tbody tr")].some(r => r.dataset.method === "GET" && r.dataset.cache === "HIT")`
	deadline := time.Now().Add(20 * time.Second)
	for {
		step("search again", chromedp.Click(chromedp.CSS(`#product-filter button[type=submit]`)), chromedp.Sleep(250*time.Millisecond))
		seen, err := chromedp.Run(tab, chromedp.Evaluate[bool](hit))
		if err != nil {
			t.Fatal(err)
		}
		if seen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no search was answered from the edge cache (X-Cache: HIT); log: %s", requestLog(tab))
		}
	}

	step("list users",
		chromedp.Click(chromedp.CSS(`#users-load`)),
		waitFor(fmt.Sprintf(`[...document.querySelectorAll("#user-table tbody tr")].some(r => r.cells[0].textContent === %q)`, username)),
	)
	step("sign out and be refused",
		chromedp.Click(chromedp.CSS(`#sign-out`)),
		waitFor(`document.getElementById("whoami").textContent === "Not signed in"`),
		chromedp.Click(chromedp.CSS(`#users-load`)),
		waitFor(logHas(http.MethodGet, "/api/users/users", http.StatusUnauthorized)),
		// The ingress's problem reaches the page as a readable message.
		waitFor(`document.getElementById("message").classList.contains("error") && document.getElementById("message").textContent.length > 0`),
	)
	if problems := pageProblems(); len(problems) > 0 {
		t.Fatalf("the page reported problems: %v", problems)
	}
	t.Logf("signed out, the page says: %s", pageMessage(tab))
}

func pageMessage(tab context.Context) string {
	ctx, cancel := context.WithTimeout(tab, 5*time.Second)
	defer cancel()
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("message")?.textContent ?? ""`))
	return strings.TrimSpace(text)
}

func requestLog(tab context.Context) string {
	ctx, cancel := context.WithTimeout(tab, 5*time.Second)
	defer cancel()
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("#request-log tbody tr")].map(r => [...r.cells].map(c => c.textContent).join(" ")).join("\n")`))
	return text
}
