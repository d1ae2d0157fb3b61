//! Activation checkpointing per block: gradients of a loss of the velocity, holding only each block's input
//! instead of every activation of every block.
//!
//! candle has no checkpoint hook, so the backward pass is written out. Forward: every block runs on a detached
//! copy of its input and its output is detached, so each block's graph is freed as soon as it has run; only the
//! block inputs stay. The shared tensors every block reads (time embedding, adaLN-LoRA term, projected text)
//! enter the blocks and the final layer as leaves of their own. Backward, last block first: the block is run
//! again from its saved input as a fresh graph and `(out · grad_out).sum()` is backpropagated, giving its
//! parameters' gradients and the gradient of its input, which is the previous block's `grad_out`. The gradients
//! of the shared leaves are summed over the blocks and the final layer and pushed once, with the first block's
//! input gradient, through the part of the network before the blocks (and whatever made its inputs, such as a
//! trained text encoder). The result is the gradient plain backpropagation gives, up to the order of float
//! additions; the price is a second forward pass of every block.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use crate::error::{DitError, Result};
use crate::model::{BlockShared, Embedded};
use crate::time_embed::TimeEmbedding;
use crate::{CosmosDit, DitInput};

/// A differentiable input of a subgraph cut off from what made it: gradients stop at the leaf and are collected
/// there, to be pushed on through the original tensor at the end.
struct Leaf {
    original: Tensor,
    leaf: Var,
    grad: Option<Tensor>,
}

impl Leaf {
    /// A leaf of `t`'s value (a copy: candle makes a variable only of its own storage).
    fn new(t: &Tensor) -> Result<Self> {
        Ok(Self {
            original: t.clone(),
            leaf: Var::from_tensor(&t.detach())?,
            grad: None,
        })
    }

    fn tensor(&self) -> &Tensor {
        self.leaf.as_tensor()
    }

    /// Takes the leaf's gradient out of `grads` and adds it to what was collected.
    fn collect(&mut self, grads: &mut GradStore) -> Result<()> {
        if let Some(g) = grads.remove(self.leaf.as_tensor()) {
            self.grad = Some(match self.grad.take() {
                Some(sum) => (sum + g)?,
                None => g,
            });
        }
        Ok(())
    }
}

/// `(t · grad).sum()` in float32: backpropagated, it gives every tensor before `t` the gradient it would get if
/// `grad` had reached `t` through the graph after it.
fn surrogate(t: &Tensor, grad: &Tensor) -> Result<Tensor> {
    Ok((t * grad)?.sum_all()?.to_dtype(DType::F32)?)
}

/// Adds the gradients of `trainable` in `from` to `into`; the rest of `from` is dropped (candle also computes
/// gradients of frozen weights, and keeping them would hold a copy of every frozen weight).
fn keep_trainable(into: &mut GradStore, from: &GradStore, trainable: &[Var]) -> Result<()> {
    for var in trainable {
        let Some(g) = from.get(var.as_tensor()) else {
            continue;
        };
        let sum = match into.get(var.as_tensor()) {
            Some(sum) => (sum + g)?,
            None => g.clone(),
        };
        into.insert(var.as_tensor(), sum);
    }
    Ok(())
}

/// The shared block inputs as leaves.
struct SharedLeaves {
    t_emb: Leaf,
    adaln_lora: Leaf,
    context: Leaf,
}

impl SharedLeaves {
    fn new(shared: &BlockShared) -> Result<Self> {
        Ok(Self {
            t_emb: Leaf::new(&shared.time.t_emb)?,
            adaln_lora: Leaf::new(&shared.time.adaln_lora)?,
            context: Leaf::new(&shared.context)?,
        })
    }

    fn time(&self) -> TimeEmbedding {
        TimeEmbedding {
            t_emb: self.t_emb.tensor().clone(),
            adaln_lora: self.adaln_lora.tensor().clone(),
        }
    }

    fn collect(&mut self, grads: &mut GradStore) -> Result<()> {
        self.t_emb.collect(grads)?;
        self.adaln_lora.collect(grads)?;
        self.context.collect(grads)
    }

    fn all(&self) -> [&Leaf; 3] {
        [&self.t_emb, &self.adaln_lora, &self.context]
    }
}

/// What the checkpointed forward pass leaves for the backward pass.
struct CheckpointedPass {
    /// The first block's input with the graph that made it.
    embedded: Tensor,
    leaves: SharedLeaves,
    cos: Tensor,
    sin: Tensor,
    /// Every block's input, (B, T', Hp Wp, D), without graphs.
    block_inputs: Vec<Tensor>,
    /// The last block's output, the final layer's input.
    last: Var,
    /// The velocity, its graph reaching back to `last` and the shared leaves only.
    velocity: Tensor,
}

impl CosmosDit {
    /// `loss_of(velocity)` and the gradients of the `trainable` variables (the DiT's, and those that made
    /// `input`, such as a text encoder's), computed with activation checkpointing per block: memory holds one block's activations and every
    /// block's input instead of all activations, at the price of a second forward pass of each block.
    /// `loss_of` maps the velocity (B, C_out, T, H, W) to a scalar. Returns (loss, gradients) as
    /// `loss.backward()` after [`CosmosDit::forward`] would, up to the order of float additions.
    pub fn loss_and_gradients_checkpointed<E: From<DitError>>(
        &self,
        input: &DitInput,
        trainable: &[Var],
        loss_of: impl FnOnce(&Tensor) -> std::result::Result<Tensor, E>,
    ) -> std::result::Result<(Tensor, GradStore), E> {
        let pass = self.checkpointed_forward(input)?;
        let loss = loss_of(&pass.velocity)?;
        let grads = self.checkpointed_backward(pass, &loss, trainable)?;
        Ok((loss, grads))
    }

    /// Runs every block on a detached input and detaches its output, so that each block's graph is freed once it
    /// has run; the shared tensors enter the blocks and the final layer as leaves.
    fn checkpointed_forward(&self, input: &DitInput) -> Result<CheckpointedPass> {
        let Embedded { x, shared, grid } = self.embed(input)?;
        let leaves = SharedLeaves::new(&shared)?;
        let time = leaves.time();
        let context = leaves.context.tensor();
        let mut block_inputs = Vec::with_capacity(self.blocks.len());
        let mut h = x.detach();
        for block in &self.blocks {
            let out = block.forward(&h, &time, context, shared.rope())?.detach();
            block_inputs.push(h);
            h = out;
        }
        let last = Var::from_tensor(&h)?;
        let velocity = self.head(last.as_tensor(), &time, grid)?;
        Ok(CheckpointedPass {
            embedded: x,
            leaves,
            cos: shared.cos,
            sin: shared.sin,
            block_inputs,
            last,
            velocity,
        })
    }

    /// Backpropagates `loss` through the final layer, then block by block from the last, each recomputed from its
    /// saved input, then through everything before the blocks.
    fn checkpointed_backward(
        &self,
        pass: CheckpointedPass,
        loss: &Tensor,
        trainable: &[Var],
    ) -> Result<GradStore> {
        let CheckpointedPass {
            embedded,
            mut leaves,
            cos,
            sin,
            block_inputs,
            last,
            velocity,
        } = pass;
        let mut head_grads = loss.backward()?;
        drop(velocity);
        leaves.collect(&mut head_grads)?;
        let mut grad_out = head_grads.remove(last.as_tensor());
        let mut grads = GradStore::default();
        keep_trainable(&mut grads, &head_grads, trainable)?;
        drop(head_grads);
        drop(last);
        let time = leaves.time();
        let context = leaves.context.tensor().clone();
        for (block, saved) in self.blocks.iter().zip(block_inputs).rev() {
            // No gradient: the loss depends neither on this block's output nor on anything before it.
            let Some(g) = grad_out.take() else { break };
            let block_in = Var::from_tensor(&saved)?;
            drop(saved);
            let out = block.forward(block_in.as_tensor(), &time, &context, (&cos, &sin))?;
            let mut block_grads = surrogate(&out, &g)?.backward()?;
            grad_out = block_grads.remove(block_in.as_tensor());
            leaves.collect(&mut block_grads)?;
            keep_trainable(&mut grads, &block_grads, trainable)?;
        }
        // One backward pass of the collected gradients through the embedding and what made the inputs.
        let mut ends = vec![];
        if let Some(g) = &grad_out {
            ends.push(surrogate(&embedded, g)?);
        }
        for leaf in leaves.all() {
            if let Some(g) = &leaf.grad {
                ends.push(surrogate(&leaf.original, g)?);
            }
        }
        if let Some((first, rest)) = ends.split_first() {
            let total = rest.iter().try_fold(first.clone(), |sum, s| sum + s)?;
            keep_trainable(&mut grads, &total.backward()?, trainable)?;
        }
        Ok(grads)
    }
}
