//! AdamW, schedules and clipping against hand computations.

use candle_core::{Device, Tensor, Var};
use config::Schedule;
use train::optim::{clip_global_norm, learning_rate, AdamW, AdamWParams};

#[test]
fn adamw_matches_the_formula_with_decoupled_decay() {
    let var = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0], &Device::Cpu).unwrap()).unwrap();
    let p = AdamWParams {
        weight_decay: 0.1,
        ..AdamWParams::default()
    };
    let mut opt = AdamW::new(vec![var.clone()], p).unwrap();
    let (lr, g1, g2) = (0.01, [0.5f64, -1.0], [0.25f64, 2.0]);
    let mut w = [1.0f64, -2.0];
    let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
    for (t, g) in [g1, g2].iter().enumerate() {
        opt.step(&[Tensor::new(g, &Device::Cpu).unwrap()], lr)
            .unwrap();
        let t = (t + 1) as i32;
        for i in 0..2 {
            m[i] = 0.9 * m[i] + 0.1 * g[i];
            v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
            let mh = m[i] / (1.0 - 0.9f64.powi(t));
            let vh = v[i] / (1.0 - 0.999f64.powi(t));
            w[i] = w[i] * (1.0 - lr * 0.1) - lr * mh / (vh.sqrt() + 1e-8);
        }
    }
    let got = var.as_tensor().to_vec1::<f64>().unwrap();
    for i in 0..2 {
        assert!((got[i] - w[i]).abs() < 1e-12, "{got:?} vs {w:?}");
    }
    assert_eq!(opt.t, 2);
}

#[test]
fn schedules_warm_up_linearly_then_decay_to_zero() {
    let (peak, warm, total) = (1.0, 4, 14);
    for s in [Schedule::Cosine, Schedule::Linear, Schedule::Constant] {
        assert!((learning_rate(s, peak, 0, warm, total) - 0.25).abs() < 1e-12);
        assert!((learning_rate(s, peak, 3, warm, total) - 1.0).abs() < 1e-12);
        assert!((learning_rate(s, peak, 4, warm, total) - 1.0).abs() < 1e-12);
    }
    assert!((learning_rate(Schedule::Linear, peak, 9, warm, total) - 0.5).abs() < 1e-12);
    assert!((learning_rate(Schedule::Cosine, peak, 9, warm, total) - 0.5).abs() < 1e-12);
    assert!(learning_rate(Schedule::Cosine, peak, 14, warm, total).abs() < 1e-12);
    assert_eq!(
        learning_rate(Schedule::Constant, peak, 13, warm, total),
        1.0
    );
}

#[test]
fn clipping_scales_to_the_global_norm() {
    let mut g = vec![
        Tensor::new(&[3.0f32], &Device::Cpu).unwrap(),
        Tensor::new(&[4.0f32], &Device::Cpu).unwrap(),
    ];
    let norm = clip_global_norm(&mut g, 1.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-6);
    let a = g[0].to_vec1::<f32>().unwrap()[0];
    let b = g[1].to_vec1::<f32>().unwrap()[0];
    assert!(((a * a + b * b).sqrt() - 1.0).abs() < 1e-5);
    assert!((a / b - 0.75).abs() < 1e-6);
}
