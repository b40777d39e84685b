"""A TF1 SavedModel like TF Serving's half_plus_two testdata, for the tests of the session and example APIs."""

from __future__ import annotations

from pathlib import Path


def export_tf1_half_plus_two(version_dir: str | Path) -> Path:
    """Writes a TF1 SavedModel (SavedModelBuilder, no object graph) like TF Serving's half_plus_two testdata.

    Tests of the graph-mode session path and of Classify/Regress need a TF1
    export with tf.Example signatures; building one here keeps them independent
    of the copy of TF Serving's testdata. Signatures: ``serving_default`` (x
    [-1,1] -> y = 0.5x + 2), ``classify_x_to_y`` (serialized tf.Example with
    float feature x -> scores y [-1,1]), ``regress_x_to_y`` (-> outputs y) and
    ``classify_with_classes`` (-> classes "a"/"b" and scores [y, -y]).
    """
    import tensorflow as tf

    version_dir = Path(version_dir)
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(2.0, name="b")
        x = v1.placeholder(tf.float32, shape=[None, 1], name="x")
        y = tf.add(tf.multiply(a, x), b, name="y")
        serialized = v1.placeholder(tf.string, name="tf_example")
        parsed = v1.parse_example(serialized, {"x": v1.FixedLenFeature([1], tf.float32)})
        y_example = tf.add(tf.multiply(a, parsed["x"]), b, name="y_example")
        scores = tf.concat([y_example, -y_example], axis=1, name="scores")
        classes = tf.tile(tf.constant([["a", "b"]]), [tf.shape(y_example)[0], 1], name="classes")
        info = v1.saved_model.utils.build_tensor_info
        signature = v1.saved_model.signature_def_utils.build_signature_def
        example_in = {"inputs": info(serialized)}
        signatures = {
            "serving_default": signature({"x": info(x)}, {"y": info(y)}, "tensorflow/serving/predict"),
            "classify_x_to_y": signature(example_in, {"scores": info(y_example)}, "tensorflow/serving/classify"),
            "regress_x_to_y": signature(example_in, {"outputs": info(y_example)}, "tensorflow/serving/regress"),
            "classify_with_classes": signature(
                example_in, {"classes": info(classes), "scores": info(scores)}, "tensorflow/serving/classify"
            ),
        }
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(version_dir))
            builder.add_meta_graph_and_variables(session, [tf.saved_model.SERVING], signature_def_map=signatures)
            builder.save()
    return version_dir
