"""The namespace testbed that the integration tests and the benchmarks share.

`netns` (uniquely named namespaces, links and processes, always cleaned up),
`seed000` (seed 000's topology with three real agents) and `gwlb` (an
emulated Gateway Load Balancer in front of connectors). It lives outside
tests/ because bench/ builds the same topologies, and outside the installed
distribution (pyproject's packages.find lists only what ships); no shipped
package may import it (an import-linter contract holds that).
"""
