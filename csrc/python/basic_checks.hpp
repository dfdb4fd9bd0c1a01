// The checks linsgd._core (bindings.cpp) and linsgd._cuda (bindings_cuda.cpp) word exactly alike:
// the exceptions they raise, the finiteness of a real argument, and the two float types.
#pragma once

#include <pybind11/pybind11.h>

#include <cmath>
#include <string>

namespace linsgd {
namespace python {

namespace py = pybind11;

enum class Scalar { f32, f64 };

[[noreturn]] inline void type_error(const std::string& msg) { throw py::type_error(msg); }
[[noreturn]] inline void value_error(const std::string& msg) { throw py::value_error(msg); }

// A real argument that must be finite (no NaN, no infinity); returned unchanged.
inline double finite(double v, const char* name) {
    if (!std::isfinite(v)) value_error(std::string(name) + " must be finite, got " + std::to_string(v));
    return v;
}

}  // namespace python
}  // namespace linsgd
