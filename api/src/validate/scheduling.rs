//! Checks on the scheduling fields of an instance spec (`nodeSelector`,
//! `affinity`, `tolerations`, `topologySpreadConstraints`,
//! `priorityClassName`), on a Node's taints and on PriorityClass objects,
//! with the rules of Kubernetes' apiserver where the field is the same.
//!
//! Two deliberate differences: a node selector term must have at least one
//! expression (an empty term matches nothing, so it is surely a mistake),
//! and `In`/`NotIn` values must be valid label values in node affinity too
//! (no label could match another).
//!
//! Paths use berth's field names (`instanceAntiAffinity`,
//! `instanceAffinityTerm`) even when the manifest used the Kubernetes alias.

use std::ops::RangeInclusive;

use super::{
    FieldError, dns1123_label, dns1123_subdomain, label_key, label_value, validate_labels,
};
use crate::objects::{InstanceSpec, PriorityClass};
use crate::scheduling::{
    Affinity, AffinityTerm, InstanceAffinity, NodeAffinity, NodeSelectorTerm, NodeSpec, Operator,
    Requirement, Selector, TaintEffect, Toleration, TolerationOperator, TopologySpreadConstraint,
};

/// Highest value a PriorityClass may have; Kubernetes keeps the values
/// above for its system classes.
pub const MAX_PRIORITY: i32 = 1_000_000_000;

/// Lowest value a PriorityClass may have.
pub const MIN_PRIORITY: i32 = -2_000_000_000;

/// Longest PriorityClass description, in characters.
pub const MAX_PRIORITY_CLASS_DESCRIPTION_LEN: usize = 1024;

/// Weights of preferred terms.
const WEIGHTS: RangeInclusive<i32> = 1..=100;

/// Checks the scheduling fields of the instance spec at `path`.
pub(super) fn validate_scheduling(path: &str, spec: &InstanceSpec) -> Result<(), FieldError> {
    validate_labels(&format!("{path}.nodeSelector"), &spec.node_selector)?;
    if let Some(affinity) = &spec.affinity {
        validate_affinity(&format!("{path}.affinity"), affinity)?;
    }
    for (index, toleration) in spec.tolerations.iter().enumerate() {
        validate_toleration(&format!("{path}.tolerations[{index}]"), toleration)?;
    }
    validate_spread(
        &format!("{path}.topologySpreadConstraints"),
        &spec.topology_spread_constraints,
    )?;
    if let Some(name) = &spec.priority_class_name {
        let field = format!("{path}.priorityClassName");
        if name.is_empty() {
            return Err(FieldError::new(field, "must not be empty"));
        }
        dns1123_subdomain(name).map_err(|message| FieldError::new(field, message))?;
    }
    Ok(())
}

/// Checks that a template leaves the fields the cluster derives from
/// `priorityClassName` unset.
pub(super) fn validate_template_priority(
    path: &str,
    spec: &InstanceSpec,
) -> Result<(), FieldError> {
    let derived = [
        ("priority", spec.priority.is_some()),
        ("preemptionPolicy", spec.preemption_policy.is_some()),
    ];
    match derived.into_iter().find(|(_, set)| *set) {
        Some((name, _)) => Err(FieldError::new(
            format!("{path}.{name}"),
            "must not be set: derived from priorityClassName",
        )),
        None => Ok(()),
    }
}

/// Checks a Node's taints: valid keys and values, unique by key and effect.
pub(super) fn validate_node_spec(path: &str, spec: &NodeSpec) -> Result<(), FieldError> {
    for (index, taint) in spec.taints.iter().enumerate() {
        let path = format!("{path}.taints[{index}]");
        let key = format!("{path}.key");
        if taint.key.is_empty() {
            return Err(FieldError::new(key, "must not be empty"));
        }
        label_key(&taint.key).map_err(|message| FieldError::new(key, message))?;
        label_value(&taint.value)
            .map_err(|message| FieldError::new(format!("{path}.value"), message))?;
        let mut earlier = spec.taints.iter().take(index);
        if let Some(first) =
            earlier.position(|other| other.key == taint.key && other.effect == taint.effect)
        {
            return Err(FieldError::new(
                path,
                format!(
                    "duplicate taint {:?} with effect {:?}, already set by taints[{first}]",
                    taint.key, taint.effect
                ),
            ));
        }
    }
    Ok(())
}

/// Checks a PriorityClass's value and description; its name and namespace
/// are checked with the metadata.
pub(super) fn validate_priority_class(class: &PriorityClass) -> Result<(), FieldError> {
    if class.value > MAX_PRIORITY {
        return Err(FieldError::new(
            "value",
            format!("must be <= {MAX_PRIORITY}: higher values are reserved for the system"),
        ));
    }
    if class.value < MIN_PRIORITY {
        return Err(FieldError::new(
            "value",
            format!("must be >= {MIN_PRIORITY}"),
        ));
    }
    let length = class.description.chars().count();
    if length > MAX_PRIORITY_CLASS_DESCRIPTION_LEN {
        return Err(FieldError::new(
            "description",
            format!(
                "must be at most {MAX_PRIORITY_CLASS_DESCRIPTION_LEN} characters, found {length}"
            ),
        ));
    }
    Ok(())
}

fn validate_affinity(path: &str, affinity: &Affinity) -> Result<(), FieldError> {
    if let Some(node) = &affinity.node_affinity {
        validate_node_affinity(&format!("{path}.nodeAffinity"), node)?;
    }
    let instance = [
        ("instanceAffinity", &affinity.instance_affinity),
        ("instanceAntiAffinity", &affinity.instance_anti_affinity),
    ];
    for (name, rules) in instance {
        if let Some(rules) = rules {
            validate_instance_affinity(&format!("{path}.{name}"), rules)?;
        }
    }
    Ok(())
}

fn validate_node_affinity(path: &str, affinity: &NodeAffinity) -> Result<(), FieldError> {
    if let Some(required) = &affinity.required_during_scheduling_ignored_during_execution {
        let path =
            format!("{path}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms");
        if required.node_selector_terms.is_empty() {
            return Err(FieldError::new(path, "must have at least one term"));
        }
        for (index, term) in required.node_selector_terms.iter().enumerate() {
            validate_node_term(&format!("{path}[{index}]"), term)?;
        }
    }
    let preferred = &affinity.preferred_during_scheduling_ignored_during_execution;
    for (index, term) in preferred.iter().enumerate() {
        let path = format!("{path}.preferredDuringSchedulingIgnoredDuringExecution[{index}]");
        validate_weight(&path, term.weight)?;
        validate_node_term(&format!("{path}.preference"), &term.preference)?;
    }
    Ok(())
}

fn validate_node_term(path: &str, term: &NodeSelectorTerm) -> Result<(), FieldError> {
    let path = format!("{path}.matchExpressions");
    if term.match_expressions.is_empty() {
        return Err(FieldError::new(
            path,
            "must not be empty: an empty term matches no node",
        ));
    }
    for (index, requirement) in term.match_expressions.iter().enumerate() {
        validate_requirement(&format!("{path}[{index}]"), requirement)?;
    }
    Ok(())
}

fn validate_instance_affinity(path: &str, affinity: &InstanceAffinity) -> Result<(), FieldError> {
    let required = &affinity.required_during_scheduling_ignored_during_execution;
    for (index, term) in required.iter().enumerate() {
        validate_affinity_term(
            &format!("{path}.requiredDuringSchedulingIgnoredDuringExecution[{index}]"),
            term,
        )?;
    }
    let preferred = &affinity.preferred_during_scheduling_ignored_during_execution;
    for (index, term) in preferred.iter().enumerate() {
        let path = format!("{path}.preferredDuringSchedulingIgnoredDuringExecution[{index}]");
        validate_weight(&path, term.weight)?;
        validate_affinity_term(
            &format!("{path}.instanceAffinityTerm"),
            &term.instance_affinity_term,
        )?;
    }
    Ok(())
}

fn validate_affinity_term(path: &str, term: &AffinityTerm) -> Result<(), FieldError> {
    validate_selector(&format!("{path}.labelSelector"), &term.label_selector)?;
    for (index, namespace) in term.namespaces.iter().enumerate() {
        dns1123_label(namespace)
            .map_err(|message| FieldError::new(format!("{path}.namespaces[{index}]"), message))?;
    }
    validate_topology_key(&format!("{path}.topologyKey"), &term.topology_key)
}

fn validate_weight(path: &str, weight: i32) -> Result<(), FieldError> {
    if WEIGHTS.contains(&weight) {
        Ok(())
    } else {
        Err(FieldError::new(
            format!("{path}.weight"),
            format!(
                "must be between {} and {}, found {weight}",
                WEIGHTS.start(),
                WEIGHTS.end()
            ),
        ))
    }
}

fn validate_selector(path: &str, selector: &Selector) -> Result<(), FieldError> {
    validate_labels(&format!("{path}.matchLabels"), &selector.match_labels)?;
    for (index, requirement) in selector.match_expressions.iter().enumerate() {
        validate_requirement(&format!("{path}.matchExpressions[{index}]"), requirement)?;
    }
    Ok(())
}

/// Checks `key operator values`: `In`/`NotIn` take label values, `Gt`/`Lt`
/// one integer, `Exists`/`DoesNotExist` none.
fn validate_requirement(path: &str, requirement: &Requirement) -> Result<(), FieldError> {
    label_key(&requirement.key)
        .map_err(|message| FieldError::new(format!("{path}.key"), message))?;
    let field = format!("{path}.values");
    let operator = requirement.operator;
    let values = &requirement.values;
    match operator {
        Operator::In | Operator::NotIn => {
            if values.is_empty() {
                return Err(FieldError::new(
                    field,
                    format!("must have at least one value when operator is {operator:?}"),
                ));
            }
            for (index, value) in values.iter().enumerate() {
                label_value(value)
                    .map_err(|message| FieldError::new(format!("{field}[{index}]"), message))?;
            }
        }
        Operator::Exists | Operator::DoesNotExist => {
            if !values.is_empty() {
                return Err(FieldError::new(
                    field,
                    format!("must be empty when operator is {operator:?}"),
                ));
            }
        }
        Operator::Gt | Operator::Lt => {
            let [value] = values.as_slice() else {
                return Err(FieldError::new(
                    field,
                    format!(
                        "must have exactly one value when operator is {operator:?}, found {}",
                        values.len()
                    ),
                ));
            };
            if value.parse::<i64>().is_err() {
                return Err(FieldError::new(
                    format!("{field}[0]"),
                    format!("{value:?} is not an integer, as operator {operator:?} needs"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks a toleration as Kubernetes does: an empty key only with `Exists`,
/// no value with `Exists`, `tolerationSeconds` only with effect `NoExecute`.
fn validate_toleration(path: &str, toleration: &Toleration) -> Result<(), FieldError> {
    if toleration.key.is_empty() {
        if toleration.operator != TolerationOperator::Exists {
            return Err(FieldError::new(
                format!("{path}.operator"),
                "must be Exists when key is empty, which tolerates every taint",
            ));
        }
    } else {
        label_key(&toleration.key)
            .map_err(|message| FieldError::new(format!("{path}.key"), message))?;
    }
    let field = format!("{path}.value");
    match toleration.operator {
        TolerationOperator::Equal => {
            label_value(&toleration.value).map_err(|message| FieldError::new(field, message))?;
        }
        TolerationOperator::Exists => {
            if !toleration.value.is_empty() {
                return Err(FieldError::new(
                    field,
                    "must be empty when operator is Exists",
                ));
            }
        }
    }
    if toleration.toleration_seconds.is_some() && toleration.effect != Some(TaintEffect::NoExecute)
    {
        return Err(FieldError::new(
            format!("{path}.effect"),
            "must be NoExecute when tolerationSeconds is set",
        ));
    }
    Ok(())
}

/// Checks each constraint, and that no two share a topologyKey and
/// whenUnsatisfiable.
fn validate_spread(path: &str, constraints: &[TopologySpreadConstraint]) -> Result<(), FieldError> {
    for (index, constraint) in constraints.iter().enumerate() {
        let path = format!("{path}[{index}]");
        if constraint.max_skew < 1 {
            return Err(FieldError::new(
                format!("{path}.maxSkew"),
                format!("must be >= 1, found {}", constraint.max_skew),
            ));
        }
        let key = format!("{path}.topologyKey");
        validate_topology_key(&key, &constraint.topology_key)?;
        let mut earlier = constraints.iter().take(index);
        if let Some(first) = earlier.position(|other| {
            other.topology_key == constraint.topology_key
                && other.when_unsatisfiable == constraint.when_unsatisfiable
        }) {
            return Err(FieldError::new(
                key,
                format!(
                    "duplicate topologyKey {:?} with whenUnsatisfiable {:?}, already set by \
                     topologySpreadConstraints[{first}]",
                    constraint.topology_key, constraint.when_unsatisfiable
                ),
            ));
        }
        validate_selector(&format!("{path}.labelSelector"), &constraint.label_selector)?;
    }
    Ok(())
}

fn validate_topology_key(path: &str, key: &str) -> Result<(), FieldError> {
    if key.is_empty() {
        return Err(FieldError::new(path, "must not be empty"));
    }
    label_key(key).map_err(|message| FieldError::new(path, message))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, labels, spec};
    use super::*;
    use crate::meta::{API_VERSION, ObjectMeta};
    use crate::objects::{Instance, InstanceStatus, Node, NodeStatus, Object};
    use crate::scheduling::{
        NodeSelector, PreemptionPolicy, PreferredSchedulingTerm, Taint, WeightedAffinityTerm,
        WhenUnsatisfiable,
    };
    use crate::validate::validate_object;

    const TEMPLATE: &str = "spec.template.spec";
    const NODE_AFFINITY: &str = "spec.template.spec.affinity.nodeAffinity";
    const REQUIRED_TERMS: &str = "spec.template.spec.affinity.nodeAffinity.\
                                  requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms";

    /// Validates a good Deployment whose template spec `change` edits.
    fn template(change: impl FnOnce(&mut InstanceSpec)) -> Result<(), String> {
        check(|d| change(&mut d.spec.template.spec))
    }

    /// The path of a template error, or `Ok`.
    fn path_of(change: impl FnOnce(&mut InstanceSpec)) -> Result<(), String> {
        template(change).map_err(|e| e.split(": ").next().unwrap_or_default().to_owned())
    }

    fn requirement(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    fn term(requirements: Vec<Requirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: requirements,
        }
    }

    fn affinity_term(topology_key: &str) -> AffinityTerm {
        AffinityTerm {
            label_selector: Selector {
                match_labels: labels(&[("app", "hello")]),
                match_expressions: vec![requirement("tier", Operator::In, &["web"])],
            },
            namespaces: vec![],
            topology_key: topology_key.into(),
        }
    }

    fn toleration(key: &str, operator: TolerationOperator, value: &str) -> Toleration {
        Toleration {
            key: key.into(),
            operator,
            value: value.into(),
            ..Toleration::default()
        }
    }

    fn spread(max_skew: i32, topology_key: &str) -> TopologySpreadConstraint {
        TopologySpreadConstraint {
            max_skew,
            topology_key: topology_key.into(),
            when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
            label_selector: Selector::default(),
        }
    }

    /// Sets required node affinity with one term of `requirements`.
    fn require(spec: &mut InstanceSpec, requirements: Vec<Requirement>) {
        spec.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![term(requirements)],
                }),
                ..NodeAffinity::default()
            }),
            ..Affinity::default()
        });
    }

    fn scheduled_spec() -> InstanceSpec {
        InstanceSpec {
            node_selector: labels(&[("berth.dev/arch", "x86_64")]),
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![
                            term(vec![
                                requirement("zone", Operator::In, &["a", "b"]),
                                requirement("gpu", Operator::DoesNotExist, &[]),
                            ]),
                            term(vec![requirement("cores", Operator::Gt, &["-4"])]),
                        ],
                    }),
                    preferred_during_scheduling_ignored_during_execution: vec![
                        PreferredSchedulingTerm {
                            weight: 100,
                            preference: term(vec![requirement("ssd", Operator::Exists, &[])]),
                        },
                    ],
                }),
                instance_affinity: Some(InstanceAffinity {
                    required_during_scheduling_ignored_during_execution: vec![affinity_term(
                        "topology.kubernetes.io/zone",
                    )],
                    ..InstanceAffinity::default()
                }),
                instance_anti_affinity: Some(InstanceAffinity {
                    preferred_during_scheduling_ignored_during_execution: vec![
                        WeightedAffinityTerm {
                            weight: 1,
                            instance_affinity_term: AffinityTerm {
                                namespaces: vec!["default".into(), "prod".into()],
                                ..affinity_term("berth.dev/hostname")
                            },
                        },
                    ],
                    ..InstanceAffinity::default()
                }),
            }),
            tolerations: vec![
                toleration("dedicated", TolerationOperator::Equal, "batch"),
                toleration("", TolerationOperator::Exists, ""),
                Toleration {
                    effect: Some(TaintEffect::NoExecute),
                    toleration_seconds: Some(300),
                    ..toleration("node.berth.dev/unreachable", TolerationOperator::Exists, "")
                },
            ],
            topology_spread_constraints: vec![
                spread(1, "topology.kubernetes.io/zone"),
                TopologySpreadConstraint {
                    when_unsatisfiable: WhenUnsatisfiable::ScheduleAnyway,
                    ..spread(2, "topology.kubernetes.io/zone")
                },
            ],
            priority_class_name: Some("high.example.com".into()),
            ..spec()
        }
    }

    #[test]
    fn good_scheduling_fields_pass() {
        assert_eq!(template(|s| *s = scheduled_spec()), Ok(()));
        let instance = Instance {
            api_version: API_VERSION.into(),
            kind: "Instance".into(),
            metadata: ObjectMeta {
                name: "hello-abc12".into(),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: InstanceSpec {
                priority: Some(1000),
                preemption_policy: Some(PreemptionPolicy::Never),
                ..scheduled_spec()
            },
            status: InstanceStatus::default(),
        };
        assert_eq!(
            validate_object(&Object::Instance(Box::new(instance))),
            Ok(()),
            "the cluster sets an instance's priority"
        );
    }

    #[test]
    fn checks_node_selector() {
        assert!(
            template(|s| s.node_selector = labels(&[("b@d", "x")]))
                .is_err_and(|e| e.starts_with(&format!("{TEMPLATE}.nodeSelector: label key")))
        );
        assert!(
            template(|s| s.node_selector = labels(&[("zone", "-a")]))
                .is_err_and(|e| e.starts_with(&format!("{TEMPLATE}.nodeSelector: value \"-a\"")))
        );
    }

    #[test]
    fn checks_requirements() {
        let expressions = format!("{REQUIRED_TERMS}[0].matchExpressions");
        let ok = requirement("zone", Operator::In, &["a"]);
        let cases = [
            (
                requirement("zone", Operator::In, &[]),
                "values: must have at least one value when operator is In",
            ),
            (
                requirement("zone", Operator::NotIn, &["a", "not valid"]),
                "values[1]: \"not valid\" is not a valid label value: at most 63 letters, \
                 digits, '-', '_' or '.', starting and ending with a letter or digit",
            ),
            (
                requirement("zone", Operator::Exists, &["a"]),
                "values: must be empty when operator is Exists",
            ),
            (
                requirement("zone", Operator::DoesNotExist, &["a"]),
                "values: must be empty when operator is DoesNotExist",
            ),
            (
                requirement("cores", Operator::Gt, &["1", "2"]),
                "values: must have exactly one value when operator is Gt, found 2",
            ),
            (
                requirement("cores", Operator::Lt, &[]),
                "values: must have exactly one value when operator is Lt, found 0",
            ),
            (
                requirement("cores", Operator::Lt, &["1.5"]),
                "values[0]: \"1.5\" is not an integer, as operator Lt needs",
            ),
            (
                requirement("Bad_/zone", Operator::Exists, &[]),
                "key: label key \"Bad_/zone\" is invalid: the prefix before '/' must be a \
                 DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 \
                 characters)",
            ),
        ];
        for (bad, message) in cases {
            assert_eq!(
                template(|s| require(s, vec![ok.clone(), bad.clone()])),
                Err(format!("{expressions}[1].{message}")),
                "{bad:?}"
            );
        }
        assert_eq!(
            template(|s| require(s, vec![requirement("cores", Operator::Gt, &["+8"])])),
            Ok(())
        );
    }

    #[test]
    fn checks_node_affinity_terms_and_weights() {
        assert_eq!(
            template(|s| {
                require(s, vec![]);
                if let Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(required),
                    ..
                }) = s.affinity.as_mut().and_then(|a| a.node_affinity.as_mut())
                {
                    required.node_selector_terms.clear();
                }
            }),
            Err(format!("{REQUIRED_TERMS}: must have at least one term"))
        );
        assert_eq!(
            template(|s| require(s, vec![])),
            Err(format!(
                "{REQUIRED_TERMS}[0].matchExpressions: must not be empty: an empty term \
                 matches no node"
            ))
        );
        let preferred = |weight: i32| {
            move |s: &mut InstanceSpec| {
                s.affinity = Some(Affinity {
                    node_affinity: Some(NodeAffinity {
                        preferred_during_scheduling_ignored_during_execution: vec![
                            PreferredSchedulingTerm {
                                weight: 10,
                                preference: term(vec![requirement("a", Operator::Exists, &[])]),
                            },
                            PreferredSchedulingTerm {
                                weight,
                                preference: term(vec![requirement("b", Operator::In, &[])]),
                            },
                        ],
                        ..NodeAffinity::default()
                    }),
                    ..Affinity::default()
                });
            }
        };
        let second = format!("{NODE_AFFINITY}.preferredDuringSchedulingIgnoredDuringExecution[1]");
        for weight in [0, 101, -1] {
            assert_eq!(
                template(preferred(weight)),
                Err(format!(
                    "{second}.weight: must be between 1 and 100, found {weight}"
                ))
            );
        }
        assert_eq!(
            path_of(preferred(1)),
            Err(format!("{second}.preference.matchExpressions[0].values"))
        );
    }

    #[test]
    fn checks_instance_affinity_terms() {
        let anti = |change: fn(&mut WeightedAffinityTerm)| {
            move |s: &mut InstanceSpec| {
                let mut weighted = WeightedAffinityTerm {
                    weight: 50,
                    instance_affinity_term: affinity_term("berth.dev/hostname"),
                };
                change(&mut weighted);
                s.affinity = Some(Affinity {
                    instance_anti_affinity: Some(InstanceAffinity {
                        preferred_during_scheduling_ignored_during_execution: vec![weighted],
                        ..InstanceAffinity::default()
                    }),
                    ..Affinity::default()
                });
            }
        };
        let path = "spec.template.spec.affinity.instanceAntiAffinity.\
                    preferredDuringSchedulingIgnoredDuringExecution[0]";
        assert_eq!(template(anti(|_| {})), Ok(()));
        assert_eq!(
            template(anti(|w| w.instance_affinity_term.topology_key.clear())),
            Err(format!(
                "{path}.instanceAffinityTerm.topologyKey: must not be empty"
            ))
        );
        assert_eq!(
            path_of(anti(
                |w| w.instance_affinity_term.topology_key = "a b".into()
            )),
            Err(format!("{path}.instanceAffinityTerm.topologyKey"))
        );
        assert_eq!(
            path_of(anti(|w| w.weight = 0)),
            Err(format!("{path}.weight"))
        );
        assert_eq!(
            path_of(anti(|w| {
                w.instance_affinity_term.namespaces = vec!["default".into(), "Prod".into()];
            })),
            Err(format!("{path}.instanceAffinityTerm.namespaces[1]"))
        );
        assert_eq!(
            path_of(anti(|w| {
                let selector = &mut w.instance_affinity_term.label_selector;
                selector.match_labels = labels(&[("app", "a b")]);
            })),
            Err(format!(
                "{path}.instanceAffinityTerm.labelSelector.matchLabels"
            ))
        );
        assert_eq!(
            path_of(anti(|w| {
                let selector = &mut w.instance_affinity_term.label_selector;
                selector.match_expressions[0].operator = Operator::Exists;
            })),
            Err(format!(
                "{path}.instanceAffinityTerm.labelSelector.matchExpressions[0].values"
            ))
        );
        assert_eq!(
            template(|s| {
                s.affinity = Some(Affinity {
                    instance_affinity: Some(InstanceAffinity {
                        required_during_scheduling_ignored_during_execution: vec![
                            affinity_term("zone"),
                            affinity_term(""),
                        ],
                        ..InstanceAffinity::default()
                    }),
                    ..Affinity::default()
                });
            }),
            Err("spec.template.spec.affinity.instanceAffinity.\
                 requiredDuringSchedulingIgnoredDuringExecution[1].topologyKey: must not be empty"
                .into())
        );
    }

    #[test]
    fn checks_tolerations() {
        let with = |toleration: Toleration| {
            template(|s| {
                s.tolerations = vec![
                    self::toleration("a", TolerationOperator::Exists, ""),
                    toleration,
                ];
            })
        };
        let path = "spec.template.spec.tolerations[1]";
        assert_eq!(
            with(toleration("", TolerationOperator::Equal, "")),
            Err(format!(
                "{path}.operator: must be Exists when key is empty, which tolerates every taint"
            ))
        );
        assert_eq!(
            with(toleration("dedicated", TolerationOperator::Exists, "batch")),
            Err(format!(
                "{path}.value: must be empty when operator is Exists"
            ))
        );
        assert_eq!(
            with(toleration("", TolerationOperator::Exists, "batch")),
            Err(format!(
                "{path}.value: must be empty when operator is Exists"
            ))
        );
        assert!(
            with(toleration("a/b/c", TolerationOperator::Exists, ""))
                .is_err_and(|e| e.starts_with(&format!("{path}.key: label key \"a/b/c\"")))
        );
        assert!(
            with(toleration("dedicated", TolerationOperator::Equal, "a b"))
                .is_err_and(|e| e.starts_with(&format!("{path}.value: \"a b\" is not a valid")))
        );
        let seconds = |effect: Option<TaintEffect>| Toleration {
            effect,
            toleration_seconds: Some(60),
            ..toleration("dedicated", TolerationOperator::Equal, "batch")
        };
        assert_eq!(with(seconds(Some(TaintEffect::NoExecute))), Ok(()));
        for effect in [None, Some(TaintEffect::NoSchedule)] {
            assert_eq!(
                with(seconds(effect)),
                Err(format!(
                    "{path}.effect: must be NoExecute when tolerationSeconds is set"
                )),
                "{effect:?}"
            );
        }
    }

    #[test]
    fn checks_topology_spread_constraints() {
        let path = "spec.template.spec.topologySpreadConstraints";
        assert_eq!(
            template(|s| s.topology_spread_constraints = vec![spread(1, "zone"), spread(0, "zone")]),
            Err(format!("{path}[1].maxSkew: must be >= 1, found 0"))
        );
        assert_eq!(
            template(|s| s.topology_spread_constraints = vec![spread(1, "")]),
            Err(format!("{path}[0].topologyKey: must not be empty"))
        );
        assert_eq!(
            path_of(|s| s.topology_spread_constraints = vec![spread(1, "zone/")]),
            Err(format!("{path}[0].topologyKey"))
        );
        assert_eq!(
            template(|s| s.topology_spread_constraints = vec![spread(1, "zone"), spread(3, "zone")]),
            Err(format!(
                "{path}[1].topologyKey: duplicate topologyKey \"zone\" with whenUnsatisfiable \
                 DoNotSchedule, already set by topologySpreadConstraints[0]"
            ))
        );
        assert_eq!(
            path_of(|s| {
                let mut constraint = spread(1, "zone");
                constraint.label_selector.match_expressions =
                    vec![requirement("app", Operator::NotIn, &[])];
                s.topology_spread_constraints = vec![constraint];
            }),
            Err(format!(
                "{path}[0].labelSelector.matchExpressions[0].values"
            ))
        );
    }

    #[test]
    fn checks_priority_fields() {
        assert_eq!(
            template(|s| s.priority_class_name = Some(String::new())),
            Err(format!("{TEMPLATE}.priorityClassName: must not be empty"))
        );
        assert_eq!(
            template(|s| s.priority_class_name = Some("High".into())),
            Err(format!(
                "{TEMPLATE}.priorityClassName: \"High\" is not a valid DNS-1123 subdomain: \
                 lowercase letters, digits, '-' and '.' only, each part starting and ending \
                 with a letter or digit, at most 253 characters"
            ))
        );
        assert_eq!(
            template(|s| s.priority = Some(1000)),
            Err(format!(
                "{TEMPLATE}.priority: must not be set: derived from priorityClassName"
            ))
        );
        assert_eq!(
            template(|s| s.preemption_policy = Some(PreemptionPolicy::Never)),
            Err(format!(
                "{TEMPLATE}.preemptionPolicy: must not be set: derived from priorityClassName"
            ))
        );
    }

    fn priority_class(change: impl FnOnce(&mut PriorityClass)) -> Result<(), String> {
        let mut class = PriorityClass {
            api_version: API_VERSION.into(),
            kind: "PriorityClass".into(),
            metadata: ObjectMeta {
                name: "high".into(),
                ..ObjectMeta::default()
            },
            value: 1000,
            global_default: false,
            preemption_policy: PreemptionPolicy::default(),
            description: "user-facing services".into(),
        };
        change(&mut class);
        validate_object(&Object::PriorityClass(Box::new(class))).map_err(|e| e.to_string())
    }

    #[test]
    fn checks_priority_classes() {
        assert_eq!(priority_class(|_| {}), Ok(()));
        assert_eq!(priority_class(|c| c.value = MAX_PRIORITY), Ok(()));
        assert_eq!(priority_class(|c| c.value = MIN_PRIORITY), Ok(()));
        assert_eq!(
            priority_class(|c| c.metadata.name = "team-a.high".into()),
            Ok(())
        );
        assert!(
            priority_class(|c| c.metadata.name = "High".into()).is_err_and(
                |e| e.starts_with("metadata.name: \"High\" is not a valid DNS-1123 subdomain")
            )
        );
        assert_eq!(
            priority_class(|c| c.metadata.namespace = Some("default".into())),
            Err(
                "metadata.namespace: must not be set: PriorityClass objects are not namespaced"
                    .into()
            )
        );
        assert_eq!(
            priority_class(|c| c.value = MAX_PRIORITY + 1),
            Err("value: must be <= 1000000000: higher values are reserved for the system".into())
        );
        assert_eq!(
            priority_class(|c| c.value = MIN_PRIORITY - 1),
            Err("value: must be >= -2000000000".into())
        );
        assert_eq!(
            priority_class(|c| c.description = "é".repeat(1024)),
            Ok(()),
            "the limit counts characters"
        );
        assert_eq!(
            priority_class(|c| c.description = "x".repeat(1025)),
            Err("description: must be at most 1024 characters, found 1025".into())
        );
    }

    fn node(taints: Vec<Taint>) -> Result<(), String> {
        let node = Node {
            api_version: API_VERSION.into(),
            kind: "Node".into(),
            metadata: ObjectMeta {
                name: "node-1".into(),
                ..ObjectMeta::default()
            },
            spec: NodeSpec {
                taints,
                unschedulable: false,
            },
            status: NodeStatus::default(),
        };
        validate_object(&Object::Node(Box::new(node))).map_err(|e| e.to_string())
    }

    fn taint(text: &str) -> Taint {
        Taint::parse(text).unwrap()
    }

    #[test]
    fn checks_node_taints() {
        assert_eq!(
            node(vec![
                taint("dedicated=batch:NoSchedule"),
                taint("dedicated=batch:NoExecute"),
                taint("berth.dev/maintenance:PreferNoSchedule"),
            ]),
            Ok(())
        );
        assert!(
            node(vec![taint("a/b/c=x:NoSchedule")])
                .is_err_and(|e| e.starts_with("spec.taints[0].key: label key \"a/b/c\""))
        );
        assert_eq!(
            node(vec![Taint {
                key: String::new(),
                ..taint("a:NoSchedule")
            }]),
            Err("spec.taints[0].key: must not be empty".into())
        );
        assert!(
            node(vec![taint("a=x:NoSchedule"), taint("b=-x:NoSchedule")])
                .is_err_and(|e| e.starts_with("spec.taints[1].value: \"-x\" is not a valid"))
        );
        assert_eq!(
            node(vec![taint("a=x:NoSchedule"), taint("a=y:NoSchedule")]),
            Err(
                "spec.taints[1]: duplicate taint \"a\" with effect NoSchedule, already set by \
                 taints[0]"
                    .into()
            )
        );
    }
}
