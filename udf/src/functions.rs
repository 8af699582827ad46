//! The detector window functions (and `anomaly_alert`) as DataFusion `WindowUDFImpl`s, and the lookup the streaming
//! planner uses to run the same calls incrementally.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};
use datafusion::physical_expr::PhysicalExpr;

use crate::detectors::cusum::{Cusum, CusumConfig};
use crate::detectors::diff::{Diff, DiffConfig, InnerConfig};
use crate::detectors::mad::{Mad, MadConfig};
use crate::detectors::page_hinkley::{PageHinkley, PageHinkleyConfig};
use crate::detectors::seasonal::{Seasonal, SeasonalConfig, SeasonalInner};
use crate::detectors::zscore::{ZScore, ZScoreConfig};
use crate::keyed::{Common, DetectorFunction, KeyedWindowFunction, WindowState};
use crate::multivariate::hst::{HalfSpaceTrees, HstConfig};
use crate::multivariate::iforest::{IForestConfig, IsolationForest};
use crate::multivariate::kmeans::{KMeansConfig, KMeansDetector};
use crate::multivariate::pca::{Pca, PcaConfig};
use crate::multivariate::{MultiCommon, MultiFunction};
use crate::params::{ParamKind, ParamSpec, Params, TIME, constant, features, input, result};

type Build = fn(&Params) -> Result<Arc<dyn KeyedWindowFunction>>;

/// One detector function: its parameters and how a call is bound.
#[derive(Debug)]
pub struct DetectorUdwf {
    name: &'static str,
    params: &'static [ParamSpec],
    build: Build,
    return_type: fn(&[FieldRef]) -> Result<DataType>,
    signature: Signature,
}

impl PartialEq for DetectorUdwf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for DetectorUdwf {}

impl Hash for DetectorUdwf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl DetectorUdwf {
    fn new(name: &'static str, params: &'static [ParamSpec], build: Build) -> Result<Self> {
        Self::returning(name, params, build, |_| Ok(crate::result::result_type()))
    }

    fn multivariate(
        name: &'static str,
        params: &'static [ParamSpec],
        build: Build,
    ) -> Result<Self> {
        Self::returning(
            name,
            params,
            build,
            crate::multivariate::multivariate_result_type,
        )
    }

    fn returning(
        name: &'static str,
        params: &'static [ParamSpec],
        build: Build,
        return_type: fn(&[FieldRef]) -> Result<DataType>,
    ) -> Result<Self> {
        let signature = Signature::user_defined(Volatility::Immutable)
            .with_parameter_names(params.iter().map(|p| p.name).collect::<Vec<_>>())?;
        Ok(Self {
            name,
            params,
            build,
            return_type,
            signature,
        })
    }

    /// The declared parameters, in order.
    pub fn params(&self) -> &'static [ParamSpec] {
        self.params
    }

    /// Binds a call with these (physical) arguments: the per-key state machine both the batch
    /// and the streaming form run.
    pub fn bind(&self, args: &[Arc<dyn PhysicalExpr>]) -> Result<Arc<dyn KeyedWindowFunction>> {
        let params = Params::from_exprs(self.name, self.params, args)?;
        (self.build)(&params)
    }
}

impl WindowUDFImpl for DetectorUdwf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() > self.params.len() {
            return plan_err!(
                "{} takes at most {} arguments, got {}",
                self.name,
                self.params.len(),
                arg_types.len()
            );
        }
        arg_types
            .iter()
            .zip(self.params)
            .map(|(t, spec)| match spec.kind {
                ParamKind::Input if t.is_numeric() || t.is_null() => Ok(DataType::Float64),
                ParamKind::Input => {
                    plan_err!("{}: {} must be numeric, got {t}", self.name, spec.name)
                }
                ParamKind::Result if matches!(t, DataType::Struct(_)) => Ok(t.clone()),
                ParamKind::Result => plan_err!(
                    "{}: {} must be a detector result (e.g. anomaly_mad(x) OVER w), got {t}",
                    self.name,
                    spec.name
                ),
                ParamKind::Time => match t {
                    DataType::Timestamp(_, _) => Ok(t.clone()),
                    DataType::Date32 | DataType::Date64 => {
                        Ok(DataType::Timestamp(TimeUnit::Nanosecond, None))
                    }
                    // A sequence number orders rows too; INTERVAL spans then count its units.
                    t if t.is_integer() => Ok(DataType::Int64),
                    _ => plan_err!(
                        "{}: {} (the ORDER BY column) must be a timestamp or an integer, got {t}",
                        self.name,
                        spec.name
                    ),
                },
                ParamKind::Features => {
                    crate::multivariate::coerce_features(self.name, spec.name, t)
                }
                ParamKind::Constant => Ok(t.clone()),
            })
            .collect()
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(
            field_args.name(),
            (self.return_type)(field_args.input_fields())?,
            true,
        )))
    }

    fn partition_evaluator(
        &self,
        args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        let function = self.bind(args.input_exprs())?;
        Ok(Box::new(WholePartition {
            state: function.new_state(),
        }))
    }
}

/// The batch form: one state fed the whole partition, in order.
#[derive(Debug)]
struct WholePartition {
    state: Box<dyn WindowState>,
}

impl PartitionEvaluator for WholePartition {
    fn evaluate_all(&mut self, values: &[ArrayRef], _num_rows: usize) -> Result<ArrayRef> {
        self.state.evaluate(values)
    }
}

/// The incremental form of a window function call, if Weir has one: the streaming planner's
/// entry point.
pub fn keyed_window_function(
    udf: &WindowUDF,
    args: &[Arc<dyn PhysicalExpr>],
) -> Option<Result<Arc<dyn KeyedWindowFunction>>> {
    let detector = udf.inner().downcast_ref::<DetectorUdwf>()?;
    Some(detector.bind(args))
}

const COMMON_TAIL: [ParamSpec; 6] = [
    constant("warn"),
    constant("crit"),
    constant("min_samples"),
    constant("learn_anomalies"),
    constant("rebaseline_after"),
    TIME,
];

static ZSCORE_PARAMS: [ParamSpec; 10] = {
    let t = COMMON_TAIL;
    [
        input("x"),
        constant("window"),
        constant("method"),
        constant("half_life"),
        t[0],
        t[1],
        t[2],
        t[3],
        t[4],
        t[5],
    ]
};
static EWMA_PARAMS: [ParamSpec; 8] = {
    let t = COMMON_TAIL;
    [
        input("x"),
        constant("half_life"),
        t[0],
        t[1],
        t[2],
        t[3],
        t[4],
        t[5],
    ]
};
static MAD_PARAMS: [ParamSpec; 8] = {
    let t = COMMON_TAIL;
    [
        input("x"),
        constant("window"),
        t[0],
        t[1],
        t[2],
        t[3],
        t[4],
        t[5],
    ]
};
static DIFF_PARAMS: [ParamSpec; 12] = {
    let t = COMMON_TAIL;
    [
        input("x"),
        constant("inner"),
        constant("lag"),
        constant("window"),
        constant("method"),
        constant("half_life"),
        t[0],
        t[1],
        t[2],
        t[3],
        t[4],
        t[5],
    ]
};
static SEASONAL_PARAMS: [ParamSpec; 14] = {
    let t = COMMON_TAIL;
    [
        input("x"),
        constant("period"),
        constant("bins"),
        constant("smoothing"),
        constant("inner"),
        constant("window"),
        constant("method"),
        constant("half_life"),
        t[0],
        t[1],
        t[2],
        t[3],
        t[4],
        t[5],
    ]
};
static CUSUM_PARAMS: [ParamSpec; 8] = [
    input("x"),
    constant("k"),
    constant("h"),
    constant("crit"),
    constant("baseline"),
    constant("half_life"),
    constant("min_samples"),
    TIME,
];
static PAGE_HINKLEY_PARAMS: [ParamSpec; 7] = [
    input("x"),
    constant("delta"),
    constant("lambda"),
    constant("alpha"),
    constant("crit"),
    constant("min_samples"),
    TIME,
];

const MULTI_TAIL: [ParamSpec; 5] = [
    constant("warn"),
    constant("crit"),
    constant("min_samples"),
    constant("learn_anomalies"),
    constant("rebaseline_after"),
];

static PCA_PARAMS: [ParamSpec; 9] = {
    let t = MULTI_TAIL;
    [
        features("x"),
        constant("components"),
        constant("half_life"),
        constant("refit"),
        t[0],
        t[1],
        t[2],
        t[3],
        t[4],
    ]
};
static KMEANS_PARAMS: [ParamSpec; 10] = {
    let t = MULTI_TAIL;
    [
        features("x"),
        constant("k"),
        constant("batch"),
        constant("seed"),
        constant("calibration"),
        t[0],
        t[1],
        t[2],
        t[3],
        t[4],
    ]
};
static HST_PARAMS: [ParamSpec; 11] = {
    let t = MULTI_TAIL;
    [
        features("x"),
        constant("trees"),
        constant("height"),
        constant("window"),
        constant("seed"),
        constant("calibration"),
        t[0],
        t[1],
        t[2],
        t[3],
        t[4],
    ]
};
static IFOREST_PARAMS: [ParamSpec; 12] = {
    let t = MULTI_TAIL;
    [
        features("x"),
        constant("trees"),
        constant("window"),
        constant("sample"),
        constant("refit"),
        constant("seed"),
        constant("calibration"),
        t[0],
        t[1],
        t[2],
        t[3],
        t[4],
    ]
};

static ALERT_PARAMS: [ParamSpec; 4] = [
    result("r"),
    constant("min_duration"),
    constant("cooldown"),
    TIME,
];

fn alert(params: &Params) -> Result<Arc<dyn KeyedWindowFunction>> {
    Ok(Arc::new(crate::alerts::AlertFunction::from_params(params)?))
}

fn zscore(params: &Params) -> Result<Arc<dyn KeyedWindowFunction>> {
    let common = Common::from_params("anomaly_zscore", params, 3.0, 5.0)?;
    Ok(Arc::new(DetectorFunction::<ZScore>::new(
        common,
        ZScoreConfig::from_params(params)?,
    )))
}

fn ewma(params: &Params) -> Result<Arc<dyn KeyedWindowFunction>> {
    let common = Common::from_params("anomaly_ewma", params, 3.0, 5.0)?;
    Ok(Arc::new(DetectorFunction::<ZScore>::new(
        common,
        ZScoreConfig::ewma_from_params(params)?,
    )))
}

fn mad(params: &Params) -> Result<Arc<dyn KeyedWindowFunction>> {
    let common = Common::from_params("anomaly_mad", params, 3.5, 5.0)?;
    Ok(Arc::new(DetectorFunction::<Mad>::new(
        common,
        MadConfig::from_params(params)?,
    )))
}

fn diff(params: &Params) -> Result<Arc<dyn KeyedWindowFunction>> {
    let config = DiffConfig::from_params(params)?;
    let warn = if matches!(config.inner, InnerConfig::Mad(_)) {
        3.5
    } else {
        3.0
    };
    let common = Common::from_params("anomaly_diff", params, warn, 5.0)?;
    Ok(Arc::new(DetectorFunction::<Diff>::new(common, config)))
}

fn seasonal(params: &Params) -> Result<Arc<dyn KeyedWindowFunction>> {
    let config = SeasonalConfig::from_params(params)?;
    let warn = if matches!(config.inner, SeasonalInner::Mad(_)) {
        3.5
    } else {
        3.0
    };
    let common = Common::from_params("anomaly_seasonal", params, warn, 5.0)?;
    Ok(Arc::new(DetectorFunction::<Seasonal>::new(common, config)))
}

fn cusum(params: &Params) -> Result<Arc<dyn KeyedWindowFunction>> {
    let h = params.positive("h", 5.0)?;
    let common = Common::from_params("changepoint_cusum", params, h, 2.0 * h)?;
    Ok(Arc::new(DetectorFunction::<Cusum>::new(
        common,
        CusumConfig::from_params(params)?,
    )))
}

fn page_hinkley(params: &Params) -> Result<Arc<dyn KeyedWindowFunction>> {
    let config = PageHinkleyConfig::from_params(params)?;
    let common = Common::from_params(
        "changepoint_page_hinkley",
        params,
        config.lambda,
        2.0 * config.lambda,
    )?;
    Ok(Arc::new(DetectorFunction::<PageHinkley>::new(
        common, config,
    )))
}

fn pca(params: &Params) -> Result<Arc<dyn KeyedWindowFunction>> {
    let common = MultiCommon::from_params("anomaly_pca", params, 30, false)?;
    Ok(Arc::new(MultiFunction::<Pca>::new(
        common,
        PcaConfig::from_params(params)?,
    )))
}

fn kmeans(params: &Params) -> Result<Arc<dyn KeyedWindowFunction>> {
    let common = MultiCommon::from_params("anomaly_kmeans", params, 0, true)?;
    Ok(Arc::new(MultiFunction::<KMeansDetector>::new(
        common,
        KMeansConfig::from_params(params)?,
    )))
}

fn hst(params: &Params) -> Result<Arc<dyn KeyedWindowFunction>> {
    let common = MultiCommon::from_params("anomaly_hst", params, 0, false)?;
    Ok(Arc::new(MultiFunction::<HalfSpaceTrees>::new(
        common,
        HstConfig::from_params(params)?,
    )))
}

fn iforest(params: &Params) -> Result<Arc<dyn KeyedWindowFunction>> {
    let common = MultiCommon::from_params("anomaly_iforest", params, 0, false)?;
    Ok(Arc::new(MultiFunction::<IsolationForest>::new(
        common,
        IForestConfig::from_params(params)?,
    )))
}

/// Every detector window function.
pub fn detector_functions() -> Result<Vec<DetectorUdwf>> {
    Ok(vec![
        DetectorUdwf::new("anomaly_zscore", &ZSCORE_PARAMS, zscore)?,
        DetectorUdwf::new("anomaly_ewma", &EWMA_PARAMS, ewma)?,
        DetectorUdwf::new("anomaly_mad", &MAD_PARAMS, mad)?,
        DetectorUdwf::new("anomaly_diff", &DIFF_PARAMS, diff)?,
        DetectorUdwf::new("anomaly_seasonal", &SEASONAL_PARAMS, seasonal)?,
        DetectorUdwf::new("changepoint_cusum", &CUSUM_PARAMS, cusum)?,
        DetectorUdwf::new(
            "changepoint_page_hinkley",
            &PAGE_HINKLEY_PARAMS,
            page_hinkley,
        )?,
        DetectorUdwf::multivariate("anomaly_pca", &PCA_PARAMS, pca)?,
        DetectorUdwf::multivariate("anomaly_kmeans", &KMEANS_PARAMS, kmeans)?,
        DetectorUdwf::multivariate("anomaly_hst", &HST_PARAMS, hst)?,
        DetectorUdwf::multivariate("anomaly_iforest", &IFOREST_PARAMS, iforest)?,
        DetectorUdwf::returning("anomaly_alert", &ALERT_PARAMS, alert, |_| {
            Ok(crate::alerts::alert_type())
        })?,
    ])
}
