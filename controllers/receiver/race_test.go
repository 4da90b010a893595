//go:build race

package receiver

// raceAllocFactor: the race detector's instrumentation moves values that escape
// analysis keeps on the stack to the heap, about doubling what handling allocates.
const raceAllocFactor = 2
