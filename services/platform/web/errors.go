package web

import (
	"errors"
	"log/slog"
	"runtime/debug"

	"github.com/gofiber/fiber/v2"

	"github.com/portico-mesh/portico/services/platform/problem"
)

// newErrorHandler is the single place where errors become HTTP responses.
// Known problems are rendered as they are; framework errors keep their
// status; anything else is logged and hidden behind an opaque 500.
func newErrorHandler(log *slog.Logger, classify func(error) *problem.Problem) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		p := toProblem(err, classify)
		if p.Status >= 500 {
			log.ErrorContext(c.UserContext(), "request failed",
				"method", c.Method(), "path", c.Path(), "status", p.Status, "error", err.Error())
		}
		out := *p
		out.Instance = c.Path()
		out.RequestID = requestIDOf(c)
		c.Status(out.Status)
		c.Set(fiber.HeaderContentType, problem.ContentType)
		return c.JSON(out, problem.ContentType)
	}
}

func toProblem(err error, classify func(error) *problem.Problem) *problem.Problem {
	var p *problem.Problem
	if errors.As(err, &p) {
		return p
	}
	if classify != nil {
		if p := classify(err); p != nil {
			return p
		}
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		p := problem.ForStatus(fe.Code)
		if fe.Code < 500 {
			p.Detail = fe.Message
		}
		return p
	}
	return problem.New(problem.TypeInternal, fiber.StatusInternalServerError, "")
}

// recoverPanics turns a panicking handler into a 500 and a log line with
// the stack, instead of a dropped connection.
func recoverPanics(log *slog.Logger) fiber.Handler {
	return func(c *fiber.Ctx) (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.ErrorContext(c.UserContext(), "handler panicked", "panic", r, "stack", string(debug.Stack()))
				err = problem.New(problem.TypeInternal, fiber.StatusInternalServerError, "")
			}
		}()
		return c.Next()
	}
}
