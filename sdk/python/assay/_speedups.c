/* assay._speedups: an optional C `decide` for the commonest config shape.
 *
 * `assay.codegen` builds a Decider for a running config with no overrides, no layer, full
 * traffic and rules that are all string memberships or semver comparisons, when this module
 * was compiled (the SDK works without it). It does exactly what the generated Python `decide`
 * does for that shape, so results never depend on which one runs
 * (tests/unit/sdk/test_generated_decide.py compares them):
 *   - attributes that are not exactly a dict, a unit id that is not exactly a str, or any
 *     other call shape are handed to the Python `decide` (`fallback`);
 *   - each condition, in order, rejects the unit (NOT_TARGETED) unless it holds:
 *       IN_STR  the attribute is present, a str (subclasses too) and in a frozenset of str;
 *       SEMVER  the attribute is present; a plain str's verdict is read from the verdicts the
 *               SemverVerdicts object remembers (its `known` dict); anything else, or a
 *               miss, asks the object itself (`verdicts(value)`, which remembers it);
 *   - the enrolled answer is answers[mmh3.hash(prefix + unit_id, 0, False) % len(answers)],
 *     hashed by calling mmh3 itself (no second implementation of the hash).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

enum { IN_STR = 0, SEMVER = 1 };

static PyObject *zero; /* the seed passed to mmh3.hash */

typedef struct {
    int kind;
    PyObject *name;   /* the attribute (str) */
    PyObject *values; /* IN_STR: frozenset of str; SEMVER: the verdicts' `known` dict */
    PyObject *call;   /* SEMVER: the SemverVerdicts object; IN_STR: NULL */
} Condition;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Py_ssize_t count;
    Condition *conditions;
    PyObject *prefix;       /* salt + ":" */
    PyObject *hash;         /* mmh3.hash */
    PyObject *answers;      /* tuple: the enrolled answer of every bucket */
    PyObject *not_targeted; /* the NOT_TARGETED answer */
    PyObject *fallback;     /* the generated Python decide */
} Decider;

/* 1: holds, 0: does not, -1: error set */
static int
condition_holds(Condition *condition, PyObject *attributes)
{
    PyObject *value = PyDict_GetItemWithError(attributes, condition->name); /* borrowed */
    if (value == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    Py_INCREF(value); /* a str subclass's __eq__ or compute() may run any Python code */
    int truth;
    if (condition->kind == IN_STR) {
        truth = PyUnicode_Check(value) ? PySet_Contains(condition->values, value) : 0;
        Py_DECREF(value);
        return truth;
    }
    /* SEMVER */
    if (PyUnicode_CheckExact(value)) {
        PyObject *known = PyDict_GetItemWithError(condition->values, value); /* borrowed */
        if (known != NULL || PyErr_Occurred()) {
            truth = known != NULL ? PyObject_IsTrue(known) : -1;
            Py_DECREF(value);
            return truth;
        }
    }
    PyObject *verdict = PyObject_CallOneArg(condition->call, value);
    Py_DECREF(value);
    if (verdict == NULL) {
        return -1;
    }
    truth = PyObject_IsTrue(verdict);
    Py_DECREF(verdict);
    return truth;
}

static PyObject *
decider_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Decider *self = (Decider *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    PyObject *unit_id = args[0], *attributes = args[1];
    if (!PyDict_CheckExact(attributes) || !PyUnicode_CheckExact(unit_id)) {
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    }
    Py_INCREF(attributes); /* a str subclass's __eq__ or a verdict may run Python code */
    for (Py_ssize_t i = 0; i < self->count; i++) {
        int holds = condition_holds(&self->conditions[i], attributes);
        if (holds <= 0) {
            Py_DECREF(attributes);
            if (holds < 0) {
                return NULL;
            }
            return Py_NewRef(self->not_targeted);
        }
    }
    Py_DECREF(attributes);
    PyObject *key = PyUnicode_Concat(self->prefix, unit_id);
    if (key == NULL) {
        return NULL;
    }
    PyObject *hash_args[3] = {key, zero, Py_False};
    PyObject *hashed = PyObject_Vectorcall(self->hash, hash_args, 3, NULL);
    Py_DECREF(key);
    if (hashed == NULL) {
        return NULL;
    }
    unsigned long long value = PyLong_AsUnsignedLongLong(hashed);
    Py_DECREF(hashed);
    if (value == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t buckets = PyTuple_GET_SIZE(self->answers);
    return Py_NewRef(PyTuple_GET_ITEM(self->answers, (Py_ssize_t)(value % (unsigned long long)buckets)));
}

static int
decider_traverse(Decider *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->count; i++) {
        Py_VISIT(self->conditions[i].name);
        Py_VISIT(self->conditions[i].values);
        Py_VISIT(self->conditions[i].call);
    }
    Py_VISIT(self->prefix);
    Py_VISIT(self->hash);
    Py_VISIT(self->answers);
    Py_VISIT(self->not_targeted);
    Py_VISIT(self->fallback);
    return 0;
}

static int
decider_clear(Decider *self)
{
    for (Py_ssize_t i = 0; i < self->count; i++) {
        Py_CLEAR(self->conditions[i].name);
        Py_CLEAR(self->conditions[i].values);
        Py_CLEAR(self->conditions[i].call);
    }
    Py_CLEAR(self->prefix);
    Py_CLEAR(self->hash);
    Py_CLEAR(self->answers);
    Py_CLEAR(self->not_targeted);
    Py_CLEAR(self->fallback);
    return 0;
}

static void
decider_dealloc(Decider *self)
{
    PyObject_GC_UnTrack(self);
    decider_clear(self);
    PyMem_Free(self->conditions);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
read_condition(PyObject *item, Condition *condition)
{
    int kind;
    PyObject *name, *rule;
    if (!PyArg_ParseTuple(item, "iUO:condition", &kind, &name, &rule)) {
        return -1;
    }
    if (kind == IN_STR) {
        if (!PyFrozenSet_Check(rule)) {
            PyErr_SetString(PyExc_TypeError, "IN_STR needs a frozenset of str");
            return -1;
        }
        condition->values = Py_NewRef(rule);
    }
    else if (kind == SEMVER) {
        PyObject *known = PyObject_GetAttrString(rule, "known");
        if (known == NULL) {
            return -1;
        }
        if (!PyDict_CheckExact(known) || !PyCallable_Check(rule)) {
            Py_DECREF(known);
            PyErr_SetString(PyExc_TypeError, "SEMVER needs a callable SemverVerdicts with a `known` dict");
            return -1;
        }
        condition->values = known;
        condition->call = Py_NewRef(rule);
    }
    else {
        PyErr_Format(PyExc_ValueError, "unknown condition kind %d", kind);
        return -1;
    }
    condition->kind = kind;
    condition->name = Py_NewRef(name);
    return 0;
}

static PyObject *
decider_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"conditions", "prefix", "hash", "answers", "not_targeted", "fallback", NULL};
    PyObject *conditions, *prefix, *hash, *answers, *not_targeted, *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!UOO!OO:Decider", keywords, &PyTuple_Type, &conditions,
                                     &prefix, &hash, &PyTuple_Type, &answers, &not_targeted, &fallback)) {
        return NULL;
    }
    if (PyTuple_GET_SIZE(answers) == 0 || !PyCallable_Check(hash) || !PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "answers must be a non-empty tuple; hash and fallback callables");
        return NULL;
    }
    Decider *self = (Decider *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = decider_vectorcall;
    Py_ssize_t count = PyTuple_GET_SIZE(conditions);
    self->conditions = PyMem_Calloc(count ? count : 1, sizeof(Condition));
    if (self->conditions == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (read_condition(PyTuple_GET_ITEM(conditions, i), &self->conditions[i]) < 0) {
            Py_DECREF(self);
            return NULL;
        }
        self->count = i + 1;
    }
    self->prefix = Py_NewRef(prefix);
    self->hash = Py_NewRef(hash);
    self->answers = Py_NewRef(answers);
    self->not_targeted = Py_NewRef(not_targeted);
    self->fallback = Py_NewRef(fallback);
    return (PyObject *)self;
}

static PyTypeObject DeciderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "assay._speedups.Decider",
    .tp_doc = PyDoc_STR("decide(unit_id, attributes) for one config; see the module source"),
    .tp_basicsize = sizeof(Decider),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = decider_new,
    .tp_dealloc = (destructor)decider_dealloc,
    .tp_traverse = (traverseproc)decider_traverse,
    .tp_clear = (inquiry)decider_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Decider, vectorcall),
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "assay._speedups",
    .m_doc = "Optional C `decide` for assay.codegen (the SDK works without it).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&DeciderType) < 0) {
        return NULL;
    }
    if (zero == NULL && (zero = PyLong_FromLong(0)) == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Decider", (PyObject *)&DeciderType) < 0 ||
        PyModule_AddIntConstant(module, "IN_STR", IN_STR) < 0 ||
        PyModule_AddIntConstant(module, "SEMVER", SEMVER) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
