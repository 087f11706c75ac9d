//! Integration tests of the metrics crate: hand-checked scorer tables, independent reference values
//! (scikit-learn, scipy) from committed fixtures, bootstrap and paired comparisons, the prediction file.

mod common;
mod compare;
mod intervals;
mod predictions_file;
mod reference;
mod retrieval;
mod scorers;
