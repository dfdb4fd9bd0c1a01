// The METH_FASTCALL plumbing of train in both bindings: pybind11's dispatcher costs about a
// microsecond for train's two dozen arguments, as much as a whole small epoch, so train reads its
// argument vector itself (parse_fastcall) and turns C++ exceptions into Python ones
// (translate_exceptions).
#pragma once

#include <pybind11/pybind11.h>

#include <exception>
#include <new>

namespace linsgd {
namespace python {

namespace py = pybind11;

// Reads a fastcall argument vector into `slots` (positional first, then keywords by name);
// false with a TypeError set when it does not fit.
inline bool parse_fastcall(const char* fn, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                           const char* const* names, int count, int required, PyObject** slots) {
    if (nargs > count) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fn, count, nargs);
        return false;
    }
    for (Py_ssize_t i = 0; i < nargs; ++i) slots[i] = args[i];
    const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; ++k) {
        PyObject* key = PyTuple_GET_ITEM(kwnames, k);
        int slot = -1;
        for (int i = 0; i < count && slot < 0; ++i)
            if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) slot = i;
        if (slot < 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fn, key);
            return false;
        }
        if (slots[slot]) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fn, names[slot]);
            return false;
        }
        slots[slot] = args[nargs + k];
    }
    for (int i = 0; i < required; ++i)
        if (!slots[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s' (position %d)", fn, names[i], i + 1);
            return false;
        }
    return true;
}

// Calls body() and turns a C++ exception into the Python one (nullptr returned).
template <typename F>
PyObject* translate_exceptions(F&& body) {
    try {
        return body().release().ptr();
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (py::builtin_exception& e) {
        e.set_error();
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
    return nullptr;
}

// Adds the METH_FASTCALL function `def` (static storage) to module m.
inline void add_fastcall(py::module_& m, PyMethodDef* def) {
    const py::object module_name = m.attr("__name__");
    PyObject* fn = PyCFunction_NewEx(def, nullptr, module_name.ptr());
    if (!fn) throw py::error_already_set();
    m.add_object(def->ml_name, py::reinterpret_steal<py::object>(fn));
}

}  // namespace python
}  // namespace linsgd
