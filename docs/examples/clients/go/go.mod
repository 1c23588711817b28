module leadership.dev/examples/follow-leadership

go 1.22
