package bench

// externalRx is a receiver that is not one of this package's own: a
// separately built program that speaks the same child protocol ("ready",
// then a JSON childResult line when told to stop).
type externalRx struct {
	// argv returns the command line for one cell, or an error that skips
	// the cell (not built, frame size not supported).
	argv func(tb *testbed, size int) ([]string, error)
}

// external are the external receivers, registered by name.
var external = map[string]externalRx{}
