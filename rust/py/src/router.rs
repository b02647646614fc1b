//! Bindings for the shard router: consistent hashing with bounded loads.

use std::collections::HashMap;

use overdrive_core::balance::{Key, Router};
use parking_lot::RwLock;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PyString, PyTuple};
use pyo3::PyTraverseError;

use crate::args::{self, show, type_name, FromArg};
use crate::errors::{bad_value, wrong_type, IntoPy};

/// Call `f` with the routing key of `obj` (str, bytes or an int in i64 range).
fn with_key<R>(
    obj: &Bound<'_, PyAny>,
    param: &'static str,
    f: impl FnOnce(Key<'_>) -> R,
) -> PyResult<R> {
    let py = obj.py();
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_str().map_err(|_| {
            bad_value(
                py,
                param,
                show(obj),
                "a str key must be valid Unicode (no lone surrogates)",
            )
        })?;
        return Ok(f(Key::Str(s)));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(f(Key::Bytes(b.as_bytes())));
    }
    if obj.is_instance_of::<PyInt>() {
        let i: i64 = obj.extract().map_err(|_| {
            bad_value(
                py,
                param,
                show(obj),
                "an int key must fit in 64 bits (use str(key) for larger ones)",
            )
        })?;
        return Ok(f(Key::Int(i)));
    }
    Err(wrong_type(
        py,
        format!("{param} must be str, bytes or int, got {}", type_name(obj)),
    ))
}

fn node_hash(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    with_key(obj, "node", |k| k.hash())
}

struct Nodes {
    objs: Vec<Py<PyAny>>,
    by_hash: HashMap<u64, usize>,
    alive: Vec<bool>,
}

/// Routes keys to nodes: consistent hashing with bounded loads.
#[pyclass(frozen, weakref, module = "overdrive._core", name = "ShardRouter")]
pub(crate) struct PyShardRouter {
    inner: Router,
    nodes: RwLock<Nodes>,
}

impl PyShardRouter {
    fn obj(&self, py: Python<'_>, i: usize) -> Py<PyAny> {
        let nodes = self.nodes.read();
        nodes
            .objs
            .get(i)
            .map_or_else(|| py.None(), |o| o.clone_ref(py))
    }

    fn index_of(&self, node: &Bound<'_, PyAny>) -> PyResult<usize> {
        let h = node_hash(node)?;
        // Copy out and drop the lock before `repr()` can run Python code.
        let found = self.nodes.read().by_hash.get(&h).copied();
        found.ok_or_else(|| bad_value(node.py(), "node", show(node), "not a node of this router"))
    }
}

#[pymethods]
impl PyShardRouter {
    /// Registers the new object with `overdrive.telemetry` (construction only).
    #[pyo3(signature = (*_args, **_kwargs))]
    fn __init__(
        slf: &Bound<'_, Self>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) {
        crate::telemetry_hook::announce(slf.as_any(), "shard_router");
    }

    #[new]
    #[pyo3(signature = (nodes, load_factor = 1.25, *, vnodes = 160))]
    fn new(
        py: Python<'_>,
        nodes: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = args::load_factor)] load_factor: f64,
        #[pyo3(from_py_with = args::vnodes)] vnodes: usize,
    ) -> PyResult<Self> {
        let pairs: Vec<(Bound<'_, PyAny>, f64)> = if let Ok(d) = nodes.cast::<PyDict>() {
            // A snapshot of the items: extracting a weight may run Python code
            // (`__float__`) that changes the dict under a live iterator.
            let items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = d.items().extract()?;
            items
                .into_iter()
                .map(|(k, v)| Ok((k, f64::from_arg(&v, "weight")?)))
                .collect::<PyResult<_>>()?
        } else if nodes.is_instance_of::<PyString>() || nodes.is_instance_of::<PyBytes>() {
            return Err(wrong_type(
                py,
                "nodes must be a sequence of node names or a {node: weight} dict, not a single str/bytes"
                    .into(),
            ));
        } else {
            nodes
                .try_iter()
                .map_err(|_| {
                    wrong_type(
                        py,
                        "nodes must be a sequence of node names or a {node: weight} dict".into(),
                    )
                })?
                .map(|n| Ok((n?, 1.0)))
                .collect::<PyResult<_>>()?
        };
        let mut by_hash = HashMap::new();
        for (i, (n, _)) in pairs.iter().enumerate() {
            let h = node_hash(n)?;
            if by_hash.insert(h, i).is_some() {
                return Err(bad_value(
                    py,
                    "nodes",
                    show(n),
                    "node names must be distinct",
                ));
            }
        }
        let mut spec: Vec<(KeyBuf, f64)> = Vec::with_capacity(pairs.len());
        for (n, w) in &pairs {
            spec.push((with_key(n, "node", KeyBuf::from_key)?, *w));
        }
        let refs: Vec<(Key<'_>, f64)> = spec.iter().map(|(k, w)| (k.key(), *w)).collect();
        let inner = Router::new(&refs, load_factor, vnodes).py(py)?;
        Ok(PyShardRouter {
            inner,
            nodes: RwLock::new(Nodes {
                alive: vec![true; pairs.len()],
                objs: pairs.into_iter().map(|(n, _)| n.unbind()).collect(),
                by_hash,
            }),
        })
    }

    /// The load factor: no node carries more than this times its fair share.
    #[getter]
    fn load_factor(&self) -> f64 {
        self.inner.load_factor()
    }

    /// The live nodes, in the order they were added.
    #[getter]
    fn nodes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let live: Vec<Py<PyAny>> = {
            let nodes = self.nodes.read();
            nodes
                .objs
                .iter()
                .zip(&nodes.alive)
                .filter(|(_, a)| **a)
                .map(|(o, _)| o.clone_ref(py))
                .collect()
        };
        // The lock is released before any Python allocation (which may run
        // finalizers that call back into this router).
        PyList::new(py, live)
    }

    /// Route `key` (str, bytes or int) to a node under the load bound, and
    /// count it on that node until `release(node)`.
    fn route(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let i = with_key(key, "key", |k| self.inner.route(k))?;
        Ok(self.obj(py, i))
    }

    /// Route every key in one call; returns the nodes in order.
    fn route_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let keys: Vec<Bound<'py, PyAny>> = keys
            .try_iter()
            .map_err(|_| {
                wrong_type(
                    py,
                    format!(
                        "keys must be an iterable of str, bytes or int keys, not {}",
                        type_name(keys)
                    ),
                )
            })?
            .collect::<PyResult<_>>()?;
        // Check every key before routing any, so a bad key leaves no load
        // counted on nodes the caller never learns about.
        for k in &keys {
            with_key(k, "keys", |_| ())?;
        }
        let mut idx = Vec::with_capacity(keys.len());
        for k in &keys {
            idx.push(with_key(k, "keys", |key| self.inner.route(key))?);
        }
        let out: Vec<Py<PyAny>> = {
            let nodes = self.nodes.read();
            idx.iter()
                .map(|&i| {
                    nodes
                        .objs
                        .get(i)
                        .map_or_else(|| py.None(), |o| o.clone_ref(py))
                })
                .collect()
        };
        PyList::new(py, out)
    }

    /// The node `key` hashes to, ignoring loads (pure consistent hashing).
    fn lookup(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let i = with_key(key, "key", |k| self.inner.lookup(k))?;
        Ok(self.obj(py, i))
    }

    /// A request routed to `node` finished: lower its load by one.
    fn release(&self, py: Python<'_>, node: &Bound<'_, PyAny>) -> PyResult<()> {
        let i = self.index_of(node)?;
        self.inner.release(i).py(py)
    }

    /// Add a node (weight 1.0 by default); about 1/N of keys move to it.
    #[pyo3(signature = (node, weight = 1.0))]
    fn add_node(
        &self,
        py: Python<'_>,
        node: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = args::weight)] weight: f64,
    ) -> PyResult<()> {
        let h = node_hash(node)?;
        // Validate the key type before locking, so no error path (which may
        // call `repr()`) runs under the lock.
        with_key(node, "node", |_| ())?;
        let duplicate = {
            let mut nodes = self.nodes.write();
            let exists = nodes
                .by_hash
                .get(&h)
                .is_some_and(|&i| nodes.alive.get(i).copied().unwrap_or(false));
            if !exists {
                let i = with_key(node, "node", |k| self.inner.add_node(k, weight))?.py(py)?;
                nodes.by_hash.insert(h, i);
                nodes.objs.push(node.clone().unbind());
                nodes.alive.push(true);
            }
            exists
        };
        if duplicate {
            // `repr()` may run Python code: only after the lock is released.
            return Err(bad_value(
                py,
                "node",
                show(node),
                "already a node of this router",
            ));
        }
        Ok(())
    }

    /// Take a node off the ring; its keys move to their next nodes.
    fn remove_node(&self, py: Python<'_>, node: &Bound<'_, PyAny>) -> PyResult<()> {
        let i = self.index_of(node)?;
        self.inner.remove_node(i).py(py)?;
        if let Some(a) = self.nodes.write().alive.get_mut(i) {
            *a = false;
        }
        Ok(())
    }

    /// Forget all loads (e.g. at the start of a new accounting period).
    fn reset_loads(&self) {
        self.inner.reset_loads();
    }

    /// Totals and, per node, load, routes, weight and the current bound.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (routes, overflows, total) = self.inner.counters();
        let caps = self.inner.caps();
        let d = PyDict::new(py);
        d.set_item("routes", routes)?;
        d.set_item("overflows", overflows)?;
        d.set_item("load", total)?;
        d.set_item("load_factor", self.inner.load_factor())?;
        let list = PyList::empty(py);
        for s in self.inner.stats() {
            let e = PyDict::new(py);
            e.set_item("node", self.obj(py, s.index))?;
            e.set_item("weight", s.weight)?;
            e.set_item("alive", s.alive)?;
            e.set_item("load", s.load)?;
            e.set_item("routes", s.routes)?;
            e.set_item("cap", caps.get(s.index).copied().unwrap_or(0))?;
            list.append(e)?;
        }
        d.set_item("nodes", list)?;
        Ok(d)
    }

    fn __len__(&self) -> usize {
        self.nodes.read().alive.iter().filter(|a| **a).count()
    }

    /// The node objects are the router's own (a `str` subclass with an
    /// attribute pointing back at the router makes a cycle).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Written only briefly, never while calling Python code; a busy
        // lock just defers the collection.
        if let Some(nodes) = self.nodes.try_read() {
            for o in &nodes.objs {
                visit.call(o)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let objs = std::mem::take(&mut self.nodes.write().objs);
        drop(objs);
    }

    fn __repr__(&self) -> String {
        format!(
            "ShardRouter(nodes={}, load_factor={})",
            self.__len__(),
            self.inner.load_factor()
        )
    }
}

/// An owned copy of a key, for building the ring from Python objects.
enum KeyBuf {
    Str(String),
    Bytes(Vec<u8>),
    Int(i64),
}

impl KeyBuf {
    fn from_key(k: Key<'_>) -> KeyBuf {
        match k {
            Key::Str(s) => KeyBuf::Str(s.to_owned()),
            Key::Bytes(b) => KeyBuf::Bytes(b.to_vec()),
            Key::Int(i) => KeyBuf::Int(i),
        }
    }

    fn key(&self) -> Key<'_> {
        match self {
            KeyBuf::Str(s) => Key::Str(s),
            KeyBuf::Bytes(b) => Key::Bytes(b),
            KeyBuf::Int(i) => Key::Int(*i),
        }
    }
}
